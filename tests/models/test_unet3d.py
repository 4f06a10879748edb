"""UNet3D on the tiny config: shapes, temporal modes, style branch, precision and bad input."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.build import build_unet
from stylecrafter_jax.models.unet3d import timestep_embedding
from stylecrafter_jax.trees import path_string
from stylecrafter_jax.train.stages import TEMPORAL_TRANSFORMERS
from tests.conftest import cross_attention_layers

B, T, H, W = 2, 4, 8, 8


@pytest.fixture(scope="module")
def unet(tiny_model):
    return build_unet(tiny_model)


@pytest.fixture(scope="module")
def apply(unet):
    return jax.jit(lambda p, x, t, c, s, mode: unet.apply({"params": p}, x, t, c, s, temporal_mode=mode),
                   static_argnums=5)


@pytest.fixture(scope="module")
def inputs(tiny_model):
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (B, T, H, W, 4))
    context = jax.random.normal(keys[1], (B, 77 + tiny_model.adapter.style_tokens, tiny_model.unet.context_dim))
    scales = 1.0 + 0.5 * jax.random.uniform(keys[2], (B, cross_attention_layers(tiny_model)))
    return x, jnp.array([981, 21]), context, scales


def _replace(params, pattern, fn):
    return jax.tree_util.tree_map_with_path(
        lambda p, v: fn(v) if re.search(pattern, path_string(p)) else v, params)


TEMPORAL_PROJ_OUT = TEMPORAL_TRANSFORMERS + "proj_out/"


def test_output_shapes_video_and_image(apply, tiny_params, inputs):
    x, t, context, scales = inputs
    video = apply(tiny_params["unet"], x, t, context, scales, None)
    image = apply(tiny_params["unet"], x[:, :1], t, context, scales, None)
    assert video.shape == (B, T, H, W, 4) and video.dtype == jnp.float32
    assert image.shape == (B, 1, H, W, 4)
    assert np.isfinite(np.asarray(video)).all() and float(jnp.std(video)) > 1e-3


def test_video_equals_per_frame_image_mode_when_temporal_proj_out_is_zero(apply, tiny_params, inputs):
    x, t, context, scales = inputs
    zeroed = _replace(tiny_params["unet"], TEMPORAL_PROJ_OUT, jnp.zeros_like)
    video = apply(zeroed, x, t, context, scales, "full")
    frames = apply(zeroed, x.reshape(B * T, 1, H, W, 4), jnp.repeat(t, T), jnp.repeat(context, T, 0),
                   jnp.repeat(scales, T, 0), "skip").reshape(video.shape)
    np.testing.assert_allclose(video, frames, atol=1e-5, rtol=1e-5)
    # With the random temporal weights the frames do interact: the test can fail.
    mixed = apply(tiny_params["unet"], x, t, context, scales, "full")
    assert float(jnp.max(jnp.abs(mixed - frames))) > 1e-3


def test_without_style_tokens_adapter_parameters_do_not_matter(apply, tiny_params, inputs):
    x, t, context, scales = inputs
    text_only = context[:, :77]
    perturbed = _replace(tiny_params["unet"], r"/processor/", lambda v: v + 1.0)
    base = apply(tiny_params["unet"], x, t, text_only, None, None)
    np.testing.assert_array_equal(base, apply(perturbed, x, t, text_only, None, None))
    with_style = apply(tiny_params["unet"], x, t, context, scales, None)
    assert float(jnp.max(jnp.abs(with_style - base))) > 1e-3
    assert float(jnp.max(jnp.abs(apply(perturbed, x, t, context, scales, None) - with_style))) > 1e-3


def test_zero_style_multiplier_equals_omitting_style_tokens(apply, tiny_params, inputs):
    x, t, context, scales = inputs
    no_style = apply(tiny_params["unet"], x, t, context[:, :77], None, None)
    gated = apply(tiny_params["unet"], x, t, context, jnp.zeros_like(scales), None)
    np.testing.assert_allclose(gated, no_style, atol=1e-5, rtol=1e-5)


def test_per_frame_context_equals_repeated_context(apply, tiny_params, inputs):
    x, t, context, scales = inputs
    per_sample = apply(tiny_params["unet"], x, t, context, scales, "frame_isolated")
    per_frame = apply(tiny_params["unet"], x, jnp.repeat(t[:, None], T, 1), jnp.repeat(context[:, None], T, 1),
                      jnp.repeat(scales[:, None], T, 1), "frame_isolated")
    np.testing.assert_allclose(per_frame, per_sample, atol=1e-5, rtol=1e-5)
    full = apply(tiny_params["unet"], x, t, context, scales, "full")
    assert float(jnp.max(jnp.abs(full - per_sample))) > 1e-3


def test_bfloat16_stays_close_to_float32(apply, tiny_model, tiny_params, inputs):
    x, t, context, scales = inputs
    config = tiny_model.copy_and_resolve_references()
    config.dtype = "bfloat16"
    out16 = jax.jit(build_unet(config).apply)({"params": tiny_params["unet"]}, x, t, context, scales)
    out32 = apply(tiny_params["unet"], x, t, context, scales, None)
    assert out16.dtype == jnp.float32
    rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    assert rel < 0.05, rel


def test_timestep_embedding_is_cos_first():
    emb = timestep_embedding(jnp.array([0.0, 981.0]), 320)
    freqs = np.exp(-np.log(10000.0) * np.arange(160) / 160)
    np.testing.assert_allclose(emb[1, :160], np.cos(981.0 * freqs), atol=1e-4)
    np.testing.assert_allclose(emb[1, 160:], np.sin(981.0 * freqs), atol=1e-4)
    np.testing.assert_array_equal(emb[0], np.concatenate([np.ones(160), np.zeros(160)]))


@pytest.mark.parametrize("name, shape, dtype, message", [
    ("x", (B, T, H, W), jnp.float32, "x: got shape"),
    ("x", (B, T, H, W, 3), jnp.float32, "x: got shape"),
    ("x", (B, T, H, W, 4), jnp.int32, "x: got dtype"),
    ("x", (B, T, 7, W, 4), jnp.float32, "divisible by 2"),
    ("context", (B, 77, 32), jnp.float32, "context: got shape"),
    ("context", (B, 10, 64), jnp.float32, "context: got shape"),
    ("scales", (B, 16), jnp.float32, "style_scales: got shape"),
])
def test_bad_input_names_the_argument(unet, tiny_params, inputs, name, shape, dtype, message):
    x, t, context, scales = inputs
    args = {"x": x, "context": context, "scales": scales}
    args[name] = jnp.zeros(shape, dtype)
    with pytest.raises(ShapeError, match=message):
        unet.apply({"params": tiny_params["unet"]}, args["x"], t, args["context"], args["scales"])
