"""The image-to-video batch (conditioning frame, VDG latent, dropout bands, interpolation) and its v loss."""

import functools

import jax
import numpy as np
import pytest

from stylecrafter_jax.defaults import image_to_video_config
from stylecrafter_jax.diffusion.schedule import process_from_config
from stylecrafter_jax.errors import ConfigError, ShapeError
from stylecrafter_jax.models.build import build_projector, build_unet
from stylecrafter_jax.train.i2v_batch import (I2VBatchSettings, I2VLossModels, batch_settings, build_batch,
                                              draw_conditions, draw_noise, i2v_loss)
from stylecrafter_jax.train.step import prediction_target, rescale_x0

B, T, H, W, C, L, D, N = 64, 4, 2, 2, 4, 77, 64, 257


def encoded_batch(seed: int, b: int = B, motion: str = "fps") -> dict:
    """A random encoded batch: latents, text context, per-frame CLIP tokens (frame f's tokens all equal f)."""
    rng = np.random.default_rng(seed)
    tokens = np.broadcast_to(np.arange(T, dtype=np.float32)[None, :, None, None], (b, T, N, D))
    return {"latents": rng.standard_normal((b, T, H, W, C)).astype(np.float32),
            "text_context": rng.standard_normal((b, L, D)).astype(np.float32) + 10.0,
            "image_tokens": np.ascontiguousarray(tokens), motion: rng.integers(1, 30, b).astype(np.float32)}


@functools.partial(jax.jit, static_argnames="settings")
def draw_and_build(key, batch, settings):
    draws = draw_conditions(key, batch["latents"].shape[0], settings)
    return draws, build_batch(draws, batch, np.zeros((1, L, D), np.float32), np.full((N, D), -1.0, np.float32),
                              settings)


def test_random_conditioning_index_is_uniform_over_the_clip_and_fixed_where_configured():
    settings = batch_settings(image_to_video_config("dynamicrafter_512", "full").model, "dc_joint")
    assert (settings.frames, settings.rand_cond_frame, settings.concat) == (16, True, "frame")
    keys = jax.random.split(jax.random.key(0), 32000)
    index = np.asarray(jax.vmap(lambda k: draw_conditions(k, 1, settings).cond_index)(keys))
    counts = np.bincount(index, minlength=16)
    assert len(counts) == 16 and np.all(np.abs(counts - 2000) < 200), counts  # ±4.5σ
    fixed = settings._replace(rand_cond_frame=False)
    assert set(np.asarray(jax.vmap(lambda k: draw_conditions(k, 1, fixed).cond_index)(keys[:100]))) == {0}


def test_dropout_bands_have_their_configured_frequencies():
    draws = draw_conditions(jax.random.key(1), 40000, I2VBatchSettings(frames=16))
    text, image = np.asarray(draws.drop_text), np.asarray(draws.drop_image)
    for fraction, expected in [(np.mean(text & ~image), 0.05), (np.mean(text & image), 0.05),
                               (np.mean(image & ~text), 0.05), (np.mean(~text & ~image), 0.85)]:
        assert abs(fraction - expected) < 0.006  # ±5σ at 40000 draws


def test_vdg_latent_is_the_conditioning_frame_repeated_and_never_dropped():
    batch = encoded_batch(2)
    settings = I2VBatchSettings(frames=T, uncond_prob=0.2)
    draws, out = draw_and_build(jax.random.key(3), batch, settings)
    index = int(draws.cond_index)
    text, image = np.asarray(draws.drop_text), np.asarray(draws.drop_image)
    assert text.any() and image.any() and (text & image).any() and (~text & ~image).any()
    np.testing.assert_array_equal(out["latents"], batch["latents"])
    concat = np.asarray(out["concat"])
    np.testing.assert_array_equal(concat, np.repeat(batch["latents"][:, index:index + 1], T, axis=1))
    np.testing.assert_array_equal(out["image_tokens"][~image], np.full((int((~image).sum()), N, D), index))
    np.testing.assert_array_equal(out["image_tokens"][image], np.full((int(image.sum()), N, D), -1.0))
    np.testing.assert_array_equal(out["text_context"][text], 0.0)
    np.testing.assert_array_equal(out["text_context"][~text], batch["text_context"][~text])
    np.testing.assert_array_equal(out["fps"], batch["fps"].astype(np.int32))
    other = draw_and_build(jax.random.key(4), batch, settings)[0]
    assert int(other.cond_index) != index  # a fresh key draws another frame for this batch (seed-fixed)


def test_interpolation_latents_are_first_and_last_frame_with_zeros_between():
    model = image_to_video_config("dynamicrafter_512_interp", "tiny").model
    settings = batch_settings(model, "dc_interp", rand_cond_frame=True)
    assert (settings.concat, settings.rand_cond_frame, settings.cond_frame_index) == ("interp", False, 0)
    batch = encoded_batch(5, b=4)
    draws, out = draw_and_build(jax.random.key(6), batch, settings._replace(uncond_prob=0.0))
    concat = np.asarray(out["concat"])
    np.testing.assert_array_equal(concat[:, 0], batch["latents"][:, 0])
    np.testing.assert_array_equal(concat[:, -1], batch["latents"][:, -1])
    np.testing.assert_array_equal(concat[:, 1:-1], 0.0)
    np.testing.assert_array_equal(out["image_tokens"], 0.0)  # CLIP sees frame 0


def test_stage_settings_per_variant():
    dc256 = batch_settings(image_to_video_config("dynamicrafter_256", "tiny").model, "dc_adapt")
    assert (dc256.concat, dc256.motion, dc256.temporal_mode) == ("zeros", "frame_stride", "full")
    image = batch_settings(image_to_video_config("dynamicrafter_512", "tiny").model, "dc_projector")
    assert (image.frames, image.rand_cond_frame, image.temporal_mode) == (1, False, "skip")
    vc = batch_settings(image_to_video_config("videocrafter_i2v", "tiny").model, "vc_i2v")
    assert (vc.concat, vc.motion) == ("none", "fps")
    _, out = draw_and_build(jax.random.key(7), encoded_batch(8, b=2), vc)
    assert "concat" not in out


def test_bad_input_is_one_clear_error():
    full = image_to_video_config("dynamicrafter_512", "full").model
    with pytest.raises(ConfigError, match=r"cond_frame_index 16: outside the clip, expected an integer in \[0, 15\]"):
        batch_settings(full, "dc_joint", rand_cond_frame=False, cond_frame_index=16)
    with pytest.raises(ConfigError, match="'dc_interp' on model.variant 'dynamicrafter_512': needs a variant with "
                                          "a last-frame input"):
        batch_settings(full, "dc_interp")
    with pytest.raises(ConfigError, match="uncond_prob 0.5"):
        batch_settings(full, "dc_joint", uncond_prob=0.5)
    settings = I2VBatchSettings(frames=16)
    draws = draw_conditions(jax.random.key(0), B, settings)
    with pytest.raises(ShapeError, match=r"latents: got shape \(64, 4, 2, 2, 4\), expected \(b, 16, h, w, c\)"):
        build_batch(draws, encoded_batch(0), np.zeros((1, L, D)), np.zeros((N, D)), settings)
    with pytest.raises(ShapeError, match="gray_tokens: got shape"):
        build_batch(draws._replace(cond_index=0), encoded_batch(0), np.zeros((1, L, D)), np.zeros((2, D)),
                    settings._replace(frames=T))


def reference_alphas_cumprod() -> np.ndarray:
    """ᾱ of the scaled-linear betas rescaled to zero terminal SNR (Lin et al. 2023, Alg. 1), float64."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    s = np.sqrt(np.cumprod(1.0 - betas))
    s = (s - s[-1]) * s[0] / (s[0] - s[-1])
    return s ** 2


def test_v_loss_equals_numpy_of_the_reference_formula(tiny_variant):
    model, params = tiny_variant("dynamicrafter_512")
    settings = batch_settings(model, "dc_joint")
    models = I2VLossModels(unet=build_unet(model), projector=build_projector(model),
                           process=process_from_config(model))
    rng = np.random.default_rng(9)
    batch = {"latents": rng.standard_normal((2, T, 8, 8, C)).astype(np.float32),
             "text_context": rng.standard_normal((2, L, D)).astype(np.float32),
             "image_tokens": rng.standard_normal((2, N, D)).astype(np.float32), "fps": np.float32([24, 12])}
    key = jax.random.key(10)
    inputs = build_batch(draw_conditions(key, 2, settings), batch, np.zeros((1, L, D), np.float32),
                         np.zeros((N, D), np.float32), settings)
    t, noise = (np.asarray(a, np.float64) for a in draw_noise(key, batch["latents"].shape, 1000))
    t = t.astype(int)
    a = reference_alphas_cumprod()[t][:, None, None, None, None]
    scale = np.concatenate([np.linspace(1.0, 0.7, 400), np.full(1000, 0.7)])[t][:, None, None, None, None]
    x0 = scale * batch["latents"]
    x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * noise
    v = np.sqrt(a) * noise - np.sqrt(1 - a) * x0

    @jax.jit
    def loss_and_output(p, i, k, x):  # one compilation: the loss and the model's output at the NumPy x_t
        image_context = models.projector.apply({"params": p["projector"]}, i["image_tokens"])
        output = models.unet.apply({"params": p["unet"]}, x, t, i["text_context"], image_context=image_context,
                                   concat=i["concat"], fps=i["fps"])
        return i2v_loss(p, i, k, models, settings)[0], output

    loss, output = loss_and_output(params, inputs, key, np.float32(x_t))
    expected = np.mean((np.asarray(output, np.float64) - v) ** 2)
    assert expected > 0.1
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_eps_target_and_no_rescale_leave_noise_and_x0():
    process = process_from_config(image_to_video_config("dynamicrafter_256", "tiny").model)
    x0, noise, t = np.ones((2, 3)), np.full((2, 3), 2.0), np.array([0, 999])
    assert process.scale_arr is None and rescale_x0(process.scale_arr, x0, t) is x0
    np.testing.assert_array_equal(prediction_target(process.schedule, "eps", x0, t, noise), noise)
    curve = np.float32([1.0, 0.5])
    np.testing.assert_allclose(rescale_x0(curve, x0, np.array([0, 1])), [[1.0] * 3, [0.5] * 3])
