"""Jitted encoder calls: same numbers as the modules, several style references, latent scaling, bfloat16 option."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylecrafter_jax.models.sizes import image_encoder_config, text_encoder_config, vae_config
from stylecrafter_jax.conditioning.encoders import (decode_video, encode_style_images, encode_text,
                                                    encode_text_context, encode_video)
from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.clip import OpenCLIPTextTower, OpenCLIPVisionTower
from stylecrafter_jax.models.vae import LATENT_SCALE, AutoencoderKL, sample_latent


def _init(module, *inputs):
    return jax.jit(module.init)(jax.random.key(0), *inputs)["params"]


@pytest.fixture(scope="module")
def text():
    tower = OpenCLIPTextTower(**text_encoder_config("tiny"))
    tokens = np.zeros((2, 77), np.int32)
    tokens[:, :4] = [[49406, 320, 2368, 49407], [49406, 1125, 49407, 0]]
    return tower, _init(tower, tokens), tokens


def test_encode_text_equals_the_module_and_context_only_skips_nothing_it_needs(text):
    tower, params, tokens = text
    context, pooled = encode_text(tower, params, tokens)
    ref_context, ref_pooled = jax.jit(tower.apply)({"params": params}, tokens)
    np.testing.assert_allclose(context, ref_context, atol=1e-6)
    np.testing.assert_allclose(pooled, ref_pooled, atol=1e-6)
    np.testing.assert_allclose(encode_text_context(tower, params, tokens), ref_context, atol=1e-6)


def test_bfloat16_text_encoding_is_close_and_float32(text):
    tower, params, tokens = text
    context, _ = encode_text(tower, params, tokens)
    context16, pooled16 = encode_text(tower, params, tokens, bfloat16=True)
    assert context16.dtype == pooled16.dtype == jnp.float32
    assert 0 < np.abs(context16 - context).max() < 0.1


def test_several_style_references_concatenate_their_tokens():
    tower = OpenCLIPVisionTower(**image_encoder_config("tiny"))
    pixels = np.random.default_rng(0).normal(size=(2, 3, 28, 28, 3)).astype(np.float32)
    params = _init(tower, pixels[:, 0])
    tokens, embeds = encode_style_images(tower, params, pixels)
    assert tokens.shape == (2, 15, 64) and embeds.shape == (2, 3, 64)
    flat_tokens, flat_embeds = jax.jit(tower.apply)({"params": params}, pixels.reshape(6, 28, 28, 3))
    np.testing.assert_allclose(tokens[1, 5:10], flat_tokens[4], atol=1e-6)
    np.testing.assert_allclose(embeds[1, 1], flat_embeds[4], atol=1e-6)
    with pytest.raises(ShapeError, match="refs"):
        encode_style_images(tower, params, pixels[0, 0])


def test_video_latents_are_scaled_sampled_on_request_and_decoded():
    vae = AutoencoderKL(**vae_config("tiny"))
    video = np.random.default_rng(0).uniform(-1, 1, (1, 2, 16, 16, 3)).astype(np.float32)
    params = _init(vae, video[0])
    apply = jax.jit(vae.apply, static_argnames="method")
    mean, logvar = apply({"params": params}, video, method=AutoencoderKL.encode_video)
    latents = encode_video(vae, params, video)
    np.testing.assert_allclose(latents, LATENT_SCALE * mean, rtol=1e-5, atol=1e-6)
    key = jax.random.key(1)
    np.testing.assert_allclose(encode_video(vae, params, video, key),
                               LATENT_SCALE * sample_latent(key, mean, logvar), rtol=1e-5, atol=1e-6)
    frames = decode_video(vae, params, latents)
    assert frames.shape == video.shape and frames.dtype == jnp.float32
    expected = apply({"params": params}, mean, method=AutoencoderKL.decode_video)
    np.testing.assert_allclose(frames, expected, atol=1e-4)
