"""The weights a sampling run uses: a converted checkpoint directory, the toy model's export, or a random init.

Sampling params are {"unet" (with its style branches), "adapter", "text_encoder", "image_encoder", and
"vae" unless the model is pixel-space}; a converted directory stores the U-Net's style branches with
the adapter (`checkpoints/components.py`), so loading merges them back.
"""

from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylecrafter_jax.checkpoints.components import components_to_trained_tree, trained_tree_to_components
from stylecrafter_jax.checkpoints.pretrained import load_pretrained
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError
from stylecrafter_jax.models.build import init_params
from stylecrafter_jax.sampling.pipeline import build_encoders
from stylecrafter_jax.sampling.settings import pixels_per_latent, required_components

EXPORT_SUBDIR = "export"


def _init_all(model: ml_collections.ConfigDict, key: jax.Array) -> dict[str, Any]:
    """Unboxed random parameters of every component sampling needs."""
    text, vision, vae = build_encoders(model)
    unet_key, text_key, vision_key, vae_key = jax.random.split(key, 4)
    params = dict(init_params(model, unet_key))
    params["text_encoder"] = text.init(text_key, jnp.zeros((1, text.context_length), jnp.int32))["params"]
    params["image_encoder"] = vision.init(vision_key, jnp.zeros((1, vision.image_size, vision.image_size, 3)))["params"]
    if vae is not None:
        side = 2 * pixels_per_latent(model)
        params["vae"] = vae.init(vae_key, jnp.zeros((1, side, side, vae.in_channels)))["params"]
    return nn.unbox(params)


def abstract_params(model: ml_collections.ConfigDict) -> dict[str, Any]:
    """ShapeDtypeStructs of the sampling params (nothing materialised)."""
    return jax.eval_shape(lambda key: _init_all(model, key), jax.random.key(0))


def random_params(model: ml_collections.ConfigDict, seed: int) -> dict[str, Any]:
    """Random sampling params drawn on the host, nothing compiled: a stand-in model that runs, not one that draws.

    Kernels ~ N(0, 1/fan_in) (fan_in = all but the last axis), norm scales 1, biases 0, every other
    leaf (embeddings, queries, projections) ~ N(0, 0.02²).
    """
    rng = np.random.default_rng(seed)

    def draw(path: tuple, leaf: jax.ShapeDtypeStruct) -> np.ndarray:
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "scale":
            return np.ones(leaf.shape, np.float32)
        if name == "bias":
            return np.zeros(leaf.shape, np.float32)
        std = 1.0 / np.sqrt(max(1, int(np.prod(leaf.shape[:-1])))) if name == "kernel" else 0.02
        return np.float32(std) * rng.standard_normal(leaf.shape, dtype=np.float32)

    return jax.tree_util.tree_map_with_path(draw, abstract_params(model))


def to_components(params: dict[str, Any]) -> dict[str, Any]:
    """Sampling params → stored components (the style branches move from the U-Net to the adapter)."""
    components = trained_tree_to_components({"unet": params["unet"], "adapter": params["adapter"]})
    return {**components, **{k: v for k, v in params.items() if k not in ("unet", "adapter")}}


def from_components(components: dict[str, Any]) -> dict[str, Any]:
    """Stored components → sampling params."""
    trained = components_to_trained_tree({"unet": components["unet"], "adapter": components["adapter"]})
    return {**trained, **{k: v for k, v in components.items() if k not in ("unet", "adapter")}}


def load_params(directory: str, model: ml_collections.ConfigDict) -> dict[str, Any]:
    """The sampling params stored in a converted checkpoint directory, checked against the model config."""
    if not os.path.isdir(directory):
        raise ConfigError(f"checkpoint {directory!r} is not a directory: expected a converted checkpoint "
                          "(python -m stylecrafter_jax.convert import ... --out DIR)")
    names = list(required_components(model))
    abstract = to_components(abstract_params(model))
    try:
        components = load_pretrained(directory, names, abstract={name: abstract[name] for name in names})
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f"checkpoint {directory!r} does not fit the {model.size!r} model config: "
                                      f"{e}") from e
    return from_components(components)


def resolve_params(config: ml_collections.ConfigDict, checkpoint: str | None) -> tuple[dict[str, Any], str]:
    """(params, a one-line description of where they come from) for `--checkpoint` or its absence.

    Without a checkpoint: the toy training's export (`config.workdir/export`) if it exists, else a
    random initialisation (refused for the full model, whose random samples are only noise).
    """
    if checkpoint is not None:
        return load_params(checkpoint, config.model), f"weights: checkpoint {checkpoint}"
    export = os.path.join(config.workdir, EXPORT_SUBDIR)
    if os.path.isdir(export):
        return load_params(export, config.model), f"weights: the trained model in {export} (no --checkpoint given)"
    if config.model.size == "full":
        raise ConfigError(f"no --checkpoint given and no trained model in {export!r}: the full model needs "
                          "converted weights (python -m stylecrafter_jax.convert import ... --out DIR)")
    return (random_params(config.model, config.seed),
            f"weights: randomly initialised {config.model.size} model (seed {config.seed}); no --checkpoint "
            f"given and no trained model in {export}")
