"""Metric math on constructed inputs: cosines, multi-reference averaging, CLIP-Temp, flow and warping error."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.evaluation.flow import FlowEstimator
from stylecrafter_jax.evaluation.metrics import bilinear_sample, embedding_scores, warp_errors


def smooth_texture(seed: int, h: int, w: int) -> np.ndarray:
    """uint8 (h, w, 3) blurred noise, stretched to the full range: textured enough for optical flow."""
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 3)
    return (255 * (blurred - blurred.min()) / (blurred.max() - blurred.min())).round().astype(np.uint8)


def shifted_pair(dx: int, dy: int, h: int = 96, w: int = 128):
    """(a, b) crops of one texture with a(y, x) = b(y + dy, x + dx): the flow a → b is (dx, dy) everywhere."""
    big = smooth_texture(0, h + 40, w + 40)
    a = big[20:20 + h, 20:20 + w]
    b = big[20 - dy:20 - dy + h, 20 - dx:20 - dx + w]
    return a, b


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_embedding_scores_match_numpy_and_sanity_values():
    rng = np.random.default_rng(0)
    b, t, r, d, e = 2, 3, 4, 8, 6
    frames, text = rng.normal(size=(b, t, d)), rng.normal(size=(b, d))
    refs, frames_dino, refs_dino = rng.normal(size=(b, r, d)), rng.normal(size=(b, t, e)), rng.normal(size=(b, r, e))
    mask = np.array([[True, False, False, False], [True, True, True, False]])
    out = {k: np.asarray(v) for k, v in embedding_scores(frames, text, refs, frames_dino, refs_dino, mask).items()}
    np.testing.assert_allclose(out["clip_text"], np.mean(np.sum(_unit(frames) * _unit(text)[:, None], -1), 1),
                               atol=1e-6)
    for i, n in enumerate((1, 3)):  # mean over frames and the real references only
        expected = np.mean(_unit(frames[i]) @ _unit(refs[i, :n]).T)
        np.testing.assert_allclose(out["clip_style"][i], expected, atol=1e-6)
        np.testing.assert_allclose(out["dino_style"][i], np.mean(_unit(frames_dino[i]) @ _unit(refs_dino[i, :n]).T),
                                   atol=1e-6)
    temp = np.mean(np.sum(_unit(frames[:, :-1]) * _unit(frames[:, 1:]), -1), 1)
    np.testing.assert_allclose(out["clip_temp"], temp, atol=1e-6)


def test_identical_frames_and_self_style_give_one():
    rng = np.random.default_rng(1)
    frame = rng.normal(size=(1, 1, 16))
    frames = np.repeat(frame, 4, axis=1)
    refs = np.concatenate([frame, rng.normal(size=(1, 1, 16))], axis=1)  # slot 1 is padding
    mask = np.array([[True, False]])
    out = embedding_scores(frames, rng.normal(size=(1, 16)), refs, frames, refs, mask)
    np.testing.assert_allclose(out["clip_temp"], [1.0], atol=1e-6)
    np.testing.assert_allclose(out["clip_style"], [1.0], atol=1e-6)
    np.testing.assert_allclose(out["dino_style"], [1.0], atol=1e-6)


def test_single_frame_has_no_temporal_score():
    rng = np.random.default_rng(2)
    out = embedding_scores(rng.normal(size=(2, 1, 4)), rng.normal(size=(2, 4)), rng.normal(size=(2, 1, 4)),
                           rng.normal(size=(2, 1, 4)), rng.normal(size=(2, 1, 4)), np.ones((2, 1), bool))
    assert np.isnan(np.asarray(out["clip_temp"])).all()
    assert np.isfinite(np.asarray(out["clip_text"])).all()


def test_bilinear_sample_matches_scipy():
    rng = np.random.default_rng(3)
    image = rng.random((9, 11, 2)).astype(np.float32)
    coords = np.stack([rng.uniform(0, 10, (5, 7)), rng.uniform(0, 8, (5, 7))], -1).astype(np.float32)
    got = np.asarray(bilinear_sample(image, coords))
    for c in range(2):
        expected = ndimage.map_coordinates(image[..., c], [coords[..., 1], coords[..., 0]], order=1)
        np.testing.assert_allclose(got[..., c], expected, atol=1e-5)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_identical_frames_have_zero_warping_error(method):
    frame = smooth_texture(1, 48, 64)
    video = np.stack([frame, frame, frame])
    forward, backward = FlowEstimator(method).video_flows(video)
    error, valid = warp_errors(video[None] / 255.0, forward[None], backward[None])
    assert float(error[0]) < 1e-6
    assert float(valid[0]) > 0.95


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_translation_gives_the_shift_as_flow_and_a_small_warping_error(method):
    a, b = shifted_pair(3, -2)
    flow = FlowEstimator(method)
    forward = flow(a, b)
    inner = forward[16:-16, 16:-16]
    np.testing.assert_allclose(np.median(inner.reshape(-1, 2), axis=0), [3.0, -2.0], atol=0.05)
    assert np.abs(inner - [3.0, -2.0]).mean() < 0.05
    forward, backward = flow.video_flows(np.stack([a, b]))
    error, valid = warp_errors(np.stack([a, b])[None] / 255.0, forward[None], backward[None])
    unrelated = smooth_texture(7, *a.shape[:2])
    f2, b2 = flow.video_flows(np.stack([a, unrelated]))
    error_unrelated, _ = warp_errors(np.stack([a, unrelated])[None] / 255.0, f2[None], b2[None])
    assert float(error[0]) < 1e-3 < float(error_unrelated[0])
    # pixels whose target x + 3, y - 2 leaves the frame are excluded: 3 columns and 2 rows
    assert abs(float(valid[0]) - (125 * 94) / (128 * 96)) < 0.02


def test_warping_error_formula_and_occlusion_mask():
    rng = np.random.default_rng(4)
    frames = rng.random((1, 2, 6, 8, 3)).astype(np.float32)
    zero = np.zeros((1, 1, 6, 8, 2), np.float32)
    error, valid = warp_errors(frames, zero, zero)
    np.testing.assert_allclose(error, [np.mean(np.sum((frames[0, 0] - frames[0, 1]) ** 2, -1))], rtol=1e-5)
    np.testing.assert_allclose(valid, [1.0])
    backward = zero.copy()
    backward[0, 0, :, :4] = 5.0  # inconsistent with the zero forward flow on the left half: occluded
    error, valid = warp_errors(frames, zero, backward)
    np.testing.assert_allclose(valid, [0.5])
    np.testing.assert_allclose(error, [np.mean(np.sum((frames[0, 0, :, 4:] - frames[0, 1, :, 4:]) ** 2, -1))],
                               rtol=1e-5)


def test_unknown_flow_method_is_a_config_error():
    with pytest.raises(ConfigError, match="flow method 'raft'"):
        FlowEstimator("raft")
