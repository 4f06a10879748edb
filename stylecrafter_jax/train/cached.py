"""Cached encoder outputs: what a cached dataset stores for a run, and a cached batch as the step's inputs.

A cached record holds `text_context` (77, C), `image_tokens` (n, C) and the target as `latent_moments`
(t, h, w, 2·4: the VAE posterior's mean and log-variance, so that training still draws a fresh
posterior sample every step, as the reference does) or, for a pixel-space model, `latents` (t, h, w, 3).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylecrafter_jax.conditioning.encoders import encode_text_context
from stylecrafter_jax.conditioning.tokenizer import ClipTokenizer
from stylecrafter_jax.errors import DataError
from stylecrafter_jax.models.vae import AutoencoderKL, sample_latent, scale_latents
from stylecrafter_jax.train.encode import Encoders, caption_tokens, style_tokens, uint8_to_signed

CONDITION_KEYS = ("text_context", "image_tokens")
TARGET_KEYS = ("latent_moments", "latents")


def cache_encoders(config: ml_collections.ConfigDict, encoders: Encoders, params: dict[str, Any],
                   tokenizer: ClipTokenizer) -> dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]]:
    """The functions of an image or video pipeline batch whose outputs a cached dataset of the run stores."""
    def text_context(batch: dict[str, np.ndarray]) -> np.ndarray:
        tokens = caption_tokens(batch["caption"], config.data.captions, tokenizer)
        return np.asarray(encode_text_context(encoders.text, params["text_encoder"], jnp.asarray(tokens)))

    def image_tokens(batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(style_tokens(encoders, params, jnp.asarray(batch["style"])))

    def target(batch: dict[str, np.ndarray]) -> np.ndarray:
        video = uint8_to_signed(jnp.asarray(batch["video"] if "video" in batch else batch["image"][:, None]))
        if encoders.vae is None:
            return np.asarray(video)
        return np.asarray(_posterior_moments(encoders.vae, params["vae"], video))

    return {"text_context": text_context, "image_tokens": image_tokens,
            TARGET_KEYS[encoders.vae is None]: target}


@functools.partial(jax.jit, static_argnums=0)
def _posterior_moments(vae: AutoencoderKL, params: dict, video: jax.Array) -> jax.Array:
    mean, logvar = vae.apply({"params": params}, video, method=AutoencoderKL.encode_video)
    return jnp.concatenate([mean, logvar], axis=-1)


def cached_arrays(raw: dict[str, Any], latent: str) -> dict[str, np.ndarray]:
    """The step-input arrays of a cached host batch; DataError if the cache does not fit a `latent` model."""
    target = "latents" if latent == "pixels" else "latent_moments"
    missing = [key for key in (*CONDITION_KEYS, target) if key not in raw]
    if missing:
        raise DataError(f"cached batch has {sorted(raw)}; a model with latent {latent!r} needs {missing} too "
                        "(rebuild the cache with python -m stylecrafter_jax.cache for this model)")
    return {key: np.asarray(raw[key]) for key in (*CONDITION_KEYS, target)}


@functools.partial(jax.jit, static_argnames="sharding")
def inputs_from_cache(batch: dict[str, jax.Array], key: jax.Array,
                      sharding: jax.sharding.Sharding | None = None) -> dict[str, jax.Array]:
    """A cached global batch as the step's inputs: latents (a fresh posterior sample), text_context, image_tokens."""
    if "latent_moments" in batch:
        mean, logvar = jnp.split(batch["latent_moments"].astype(jnp.float32), 2, axis=-1)
        latents = scale_latents(sample_latent(key, mean, logvar))
    else:
        latents = batch["latents"].astype(jnp.float32)
    inputs = {"latents": latents, **{k: batch[k].astype(jnp.float32) for k in CONDITION_KEYS}}
    return inputs if sharding is None else jax.lax.with_sharding_constraint(inputs, sharding)
