"""Jitted calls of the frozen encoders, kept apart from the denoiser's step.

Each function takes the (unbound) module as a static argument, so one compilation serves every call
of the same module and shapes. `bfloat16=True` runs the module's matmuls and convolutions in
bfloat16 (norms, softmax and the outputs stay float32).
"""

from __future__ import annotations

import functools

import einops
import jax
import jax.numpy as jnp
import flax.linen as nn

from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.clip import OpenCLIPTextTower, OpenCLIPVisionTower
from stylecrafter_jax.models.vae import AutoencoderKL, sample_latent, scale_latents, unscale_latents


def _compute(module: nn.Module, bfloat16: bool) -> nn.Module:
    return module.clone(dtype=jnp.bfloat16) if bfloat16 else module


@functools.partial(jax.jit, static_argnums=(0, 3))
def _text(tower: OpenCLIPTextTower, params: dict, tokens: jax.Array, context_only: bool):
    context, pooled = tower.apply({"params": params}, tokens)
    return context if context_only else (context, pooled)


def encode_text(tower: OpenCLIPTextTower, params: dict, tokens: jax.Array, *,
                bfloat16: bool = False) -> tuple[jax.Array, jax.Array]:
    """(context (B, 77, width), pooled projected embedding (B, embed_dim)) of token ids (B, 77)."""
    return _text(_compute(tower, bfloat16), params, tokens, False)


def encode_text_context(tower: OpenCLIPTextTower, params: dict, tokens: jax.Array, *,
                        bfloat16: bool = False) -> jax.Array:
    """The U-Net context (B, 77, width) only; the last block, unused by it, is not computed."""
    return _text(_compute(tower, bfloat16), params, tokens, True)


@functools.partial(jax.jit, static_argnums=0)
def _vision(tower: OpenCLIPVisionTower, params: dict, pixels: jax.Array):
    return tower.apply({"params": params}, pixels)


def encode_style_images(tower: OpenCLIPVisionTower, params: dict, pixels: jax.Array, *,
                        bfloat16: bool = False) -> tuple[jax.Array, jax.Array]:
    """Style tokens and projected embeddings of CLIP-normalised pixels.

    (B, S, S, 3) gives tokens (B, 257, width) and embeddings (B, embed_dim); (B, n, S, S, 3), n
    references per sample, gives their tokens concatenated, (B, n·257, width), and embeddings
    (B, n, embed_dim), as the reference does with several style images.
    """
    if pixels.ndim == 4:
        return _vision(_compute(tower, bfloat16), params, pixels)
    if pixels.ndim != 5:
        raise ShapeError(f"style pixels: expected (batch, h, w, 3) or (batch, refs, h, w, 3), got {pixels.shape}")
    b = pixels.shape[0]
    images = einops.rearrange(pixels, "b refs h w c -> (b refs) h w c")
    tokens, embeds = _vision(_compute(tower, bfloat16), params, images)
    return (einops.rearrange(tokens, "(b refs) l d -> b (refs l) d", b=b),
            einops.rearrange(embeds, "(b refs) d -> b refs d", b=b))


@functools.partial(jax.jit, static_argnums=0)
def _vae_encode(vae: AutoencoderKL, params: dict, video: jax.Array, key: jax.Array | None) -> jax.Array:
    mean, logvar = vae.apply({"params": params}, video, method=AutoencoderKL.encode_video)
    return scale_latents(mean if key is None else sample_latent(key, mean, logvar))


@functools.partial(jax.jit, static_argnums=0)
def _vae_decode(vae: AutoencoderKL, params: dict, latents: jax.Array) -> jax.Array:
    return vae.apply({"params": params}, unscale_latents(latents), method=AutoencoderKL.decode_video)


def encode_video(vae: AutoencoderKL, params: dict, video: jax.Array, key: jax.Array | None = None, *,
                 bfloat16: bool = False) -> jax.Array:
    """Diffusion latents (b, t, h/f, w/f, 4), already × 0.18215, of a (b, t, h, w, 3) video in [-1, 1].

    All frames go through the encoder as one batch. With `key` the latents are posterior samples (as
    the reference trains), without it the posterior means.
    """
    return _vae_encode(_compute(vae, bfloat16), params, video, key)


def decode_video(vae: AutoencoderKL, params: dict, latents: jax.Array, *, bfloat16: bool = False) -> jax.Array:
    """The (b, t, h·f, w·f, 3) float32 video, not clipped, of diffusion latents (b, t, h, w, 4), as one batch."""
    return _vae_decode(_compute(vae, bfloat16), params, latents)
