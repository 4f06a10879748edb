"""Reading a cached dataset: its records as examples, a cached host batch checked against the model, and the
train step's inputs of a cached global batch.

A cached record holds `text_context` (77, C), `image_tokens` (n, C) and the target as `latent_moments`
(t, h, w, 2·4: the VAE posterior's mean and log-variance, so that training still draws a fresh
posterior sample every step, as the reference does) or, for a pixel-space model, `latents` (t, h, w, 3).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stylecrafter_jax.errors import DataError
from stylecrafter_jax.models.vae import sample_latent, scale_latents

CONDITION_KEYS = ("text_context", "image_tokens")
TARGET_KEYS = ("latent_moments", "latents")


def cached_transform(record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A cached record as an example: arrays unchanged, the caption as str (no randomness left)."""
    del rng
    return {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in record.items()}


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
