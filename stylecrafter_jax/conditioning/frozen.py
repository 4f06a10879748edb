"""The frozen encoders of a training config (CLIP text, CLIP vision, VAE) and their jitted batch calls.

`encode_batch` turns a host batch (token ids, uint8 style references, uint8 targets) into what the
differentiated step reads: `latents`, `text_context`, `image_tokens`. Leading axes are kept, so
(b, 77) tokens give (b, 77, C) context and (b, t, 77) tokens (one caption per frame) give (b, t, 77, C).
`encode_posterior` gives what a cached dataset stores of a target: the VAE posterior, not a sample of it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from stylecrafter_jax.conditioning.encoders import encode_style_images, encode_text_context, encode_video
from stylecrafter_jax.conditioning.preprocess import clip_pixels
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.build import compute_dtype
from stylecrafter_jax.models.clip import OpenCLIPTextTower, OpenCLIPVisionTower
from stylecrafter_jax.models.vae import AutoencoderKL

LATENT_SPACES = ("vae", "pixels")


class Encoders(NamedTuple):
    """The frozen modules; `vae` is None when the model diffuses pixels."""

    text: OpenCLIPTextTower
    vision: OpenCLIPVisionTower
    vae: AutoencoderKL | None


def build_encoders(model: ml_collections.ConfigDict, dtype: str | None = None) -> Encoders:
    """The encoders of `model.text_encoder`, `model.image_encoder` and (for latent "vae") `model.vae`.

    They compute in `dtype` ("float32", "bfloat16"), the model's compute dtype `model.dtype` when None.
    """
    if model.latent not in LATENT_SPACES:
        raise ConfigError(f"model.latent {model.latent!r}: expected one of {LATENT_SPACES}")
    common = dict(dtype=compute_dtype(dtype or model.dtype), attention=model.attention)
    vae = AutoencoderKL(**model.vae.to_dict(), **common) if model.latent == "vae" else None
    return Encoders(text=OpenCLIPTextTower(**model.text_encoder.to_dict(), **common),
                    vision=OpenCLIPVisionTower(**model.image_encoder.to_dict(), **common), vae=vae)


def init_encoder_params(encoders: Encoders, key: jax.Array) -> dict:
    """Random encoder parameters {'text_encoder', 'image_encoder'[, 'vae']} (the toy and tests)."""
    k_text, k_vision, k_vae = jax.random.split(key, 3)
    text, vision = encoders.text, encoders.vision
    params = {
        "text_encoder": text.init(k_text, jnp.zeros((1, text.context_length), jnp.int32))["params"],
        "image_encoder": vision.init(k_vision, jnp.zeros((1, vision.image_size, vision.image_size, 3)))["params"],
    }
    if encoders.vae is not None:
        f = encoders.vae.downsample_factor
        params["vae"] = encoders.vae.init(k_vae, jnp.zeros((1, f, f, encoders.vae.in_channels)))["params"]
    return params


def uint8_to_signed(pixels: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [-1, 1]; float input is taken to be in [-1, 1] already."""
    if pixels.dtype == jnp.uint8:
        return pixels.astype(jnp.float32) / 127.5 - 1.0
    return pixels.astype(jnp.float32)


def style_tokens(encoders: Encoders, params: dict, style: jax.Array) -> jax.Array:
    """CLIP image tokens (B, 257, width) of uint8 or [-1, 1] style references (B, s, s, 3)."""
    pixels = clip_pixels(uint8_to_signed(style), encoders.vision.image_size)
    return encode_style_images(encoders.vision, params["image_encoder"], pixels)[0]


@functools.partial(jax.jit, static_argnums=0, static_argnames="sharding")
def encode_batch(encoders: Encoders, params: dict, tokens: jax.Array, style: jax.Array, target: jax.Array,
                 key: jax.Array, sharding: jax.sharding.Sharding | None = None) -> dict[str, jax.Array]:
    """Token ids (..., 77), style images (..., s, s, 3) and targets (b, t, h, w, 3) -> encoded batch.

    `sharding` (the batch sharding of the train step) fixes the outputs' layout, which XLA would
    otherwise choose freely (e.g. the style tokens split over channels like the projection kernel).
    """
    lead_text, lead_style = tokens.shape[:-1], style.shape[:-3]
    context = encode_text_context(encoders.text, params["text_encoder"], tokens.reshape(-1, tokens.shape[-1]))
    image_tokens = style_tokens(encoders, params, style.reshape((-1,) + style.shape[-3:]))
    target = uint8_to_signed(target)
    latents = target if encoders.vae is None else encode_video(encoders.vae, params["vae"], target, key)
    encoded = {
        "latents": latents,
        "text_context": context.reshape(lead_text + context.shape[1:]),
        "image_tokens": image_tokens.reshape(lead_style + image_tokens.shape[1:]),
    }
    return encoded if sharding is None else jax.lax.with_sharding_constraint(encoded, sharding)


@functools.partial(jax.jit, static_argnums=0)
def encode_posterior(vae: AutoencoderKL, params: dict, video: jax.Array) -> jax.Array:
    """The VAE posterior of a (b, t, h, w, 3) video in [-1, 1]: its mean and log-variance concatenated on the
    channels, (b, t, h/f, w/f, 2·4), from which every training step draws its own latent sample."""
    mean, logvar = vae.apply({"params": params}, video, method=AutoencoderKL.encode_video)
    return jnp.concatenate([mean, logvar], axis=-1)
