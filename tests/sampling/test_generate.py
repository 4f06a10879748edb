"""Tests of the generation loop: batches with padding, written files, eval JSON, overwrite and bad images."""

import json
import os

import av
import numpy as np
import pytest
from PIL import Image

from stylecrafter_jax.conditioning.preprocess import load_style_image
from stylecrafter_jax.errors import DataError
from stylecrafter_jax.sampling.generate import generate, generate_eval_samples, load_style_images
from stylecrafter_jax.sampling.inputs import expand_samples, requests_from_prompts
from stylecrafter_jax.sampling.io import SampleWriter


@pytest.fixture(scope="module")
def style_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("styles")
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(96, 128), (80, 60), (64, 64)]):
        path = folder / f"s{i}.png"
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(path)
        paths.append(str(path))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder, paths


def frame_count(path):
    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24").shape for f in container.decode(video=0)]


def test_padded_batches_write_every_sample_with_its_own_noise(video_pipeline, style_files, tmp_path):
    _, paths = style_files
    prompts = ["p0", "p1", "p2"]
    jobs = expand_samples(requests_from_prompts(prompts, paths[:1]))
    captured = {}
    written = generate(video_pipeline, jobs, SampleWriter(str(tmp_path), "video"), seed=5, batch_size=2,
                       on_batch=lambda batch, pixels: captured.update({j.index: p for j, p in zip(batch, pixels)}))
    assert [w.job.index for w in written] == [0, 1, 2] and sorted(captured) == [0, 1, 2]
    for w in written:
        assert frame_count(w.paths[0]) == [(32, 32, 3)] * 4
    assert sorted(os.listdir(tmp_path / "prompts")) == ["0000_0.txt", "0001_0.txt", "0002_0.txt"]
    assert sorted(os.listdir(tmp_path / "style")) == ["0000.png", "0001.png", "0002.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "style/0000.png")),
                                  np.clip(load_style_image(paths[0]) * 127.5 + 127.5, 0, 255).astype(np.uint8))
    # Sample 2 sat in a padded batch at position 0; alone at position 1 of another batch it is the same video.
    reference = load_style_image(paths[0])[None]
    again = video_pipeline(["p0", "p2"], np.stack([reference, reference]), [0, 2], seed=5)[1]
    assert np.abs(again.astype(int) - captured[2]).max() <= 1


def test_eval_json_with_several_references(video_pipeline, style_files, tmp_path):
    folder, _ = style_files
    entries = [{"prompt": "a red circle", "style_path": "s0.png"},
               {"prompt": "a blue square", "style_path": ["s1.png", "s2.png"]},
               {"prompt": "a green star", "style_path": "s2.png"}]
    (folder / "eval.json").write_text(json.dumps(entries))
    out = tmp_path / "run"
    written = generate_eval_samples(video_pipeline, folder / "eval.json", folder, out, limit=2, samples_per_prompt=2)
    names = sorted(os.path.relpath(p, out) for w in written for p in w.paths)
    assert names == sorted(["samples/0000_0.mp4", "samples/0000_1.mp4", "samples/0001_0.mp4", "samples/0001_1.mp4",
                            "prompts/0000_0.txt", "prompts/0000_1.txt", "prompts/0001_0.txt",
                            "prompts/0001_1.txt", "style/0000.png", "style/0001_00.png", "style/0001_01.png"])
    assert (out / "prompts/0001_1.txt").read_text() == "a blue square"
    assert frame_count(str(out / "samples/0001_1.mp4")) == [(32, 32, 3)] * 4
    before = (out / "samples/0000_0.mp4").read_bytes()
    with pytest.raises(DataError, match="already holds.*--overwrite"):
        generate_eval_samples(video_pipeline, folder / "eval.json", folder, out, limit=1)
    assert (out / "samples/0000_0.mp4").read_bytes() == before
    generate_eval_samples(video_pipeline, folder / "eval.json", folder, out, limit=1, seed=99, overwrite=True)
    assert (out / "samples/0000_0.mp4").read_bytes() != before


def test_a_corrupt_reference_stops_the_run_before_anything_is_written(video_pipeline, style_files, tmp_path):
    folder, paths = style_files
    jobs = expand_samples(requests_from_prompts(["a", "b"], [paths[0]]) +
                          requests_from_prompts(["c"], [str(folder / "corrupt.png")]))
    with pytest.raises(DataError, match="corrupt.png.*cannot be read"):
        generate(video_pipeline, jobs, SampleWriter(str(tmp_path / "out"), "video"), seed=0)
    assert not os.path.exists(tmp_path / "out")


def test_load_style_images_reads_each_file_once(style_files):
    _, paths = style_files
    requests = requests_from_prompts(["a", "b"], [paths[0], paths[1]]) + requests_from_prompts(["c"], [paths[0]])
    images = load_style_images(requests)
    assert sorted(images) == sorted(paths[:2])
    assert all(image.shape == (512, 512, 3) and image.dtype == np.float32 for image in images.values())
