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
import ml_collections
import numpy as np
from etils import epath

from stylecrafter_jax.checkpoints.components import components_to_trained_tree, trained_tree_to_components
from stylecrafter_jax.checkpoints.pretrained import load_pretrained, read_manifest
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError
from stylecrafter_jax.sampling.pipeline import init_components
from stylecrafter_jax.sampling.settings import required_components

EXPORT_SUBDIR = "export"


def abstract_params(model: ml_collections.ConfigDict) -> dict[str, Any]:
    """ShapeDtypeStructs of the sampling params (nothing materialised)."""
    return jax.eval_shape(lambda key: nn.unbox(init_components(model, key)), jax.random.key(0))


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


def load_params(directory: str, model: ml_collections.ConfigDict, base: str | None = None,
                variant: str = "") -> dict[str, Any]:
    """The sampling params of a converted checkpoint directory, checked against the model config.

    Components the directory does not hold (e.g. a training export of only what a stage trained) come
    from the converted directory `base` (the config's `pretrained` base weights) when one is given.
    `variant` ("ema": a training export's EMA weights) takes the components it holds from that variant.
    """
    names = list(required_components(model))
    stored = _stored_components(directory)
    own = [name for name in names if name in stored]
    rest = [name for name in names if name not in own]
    if rest and not base:
        raise CheckpointMismatchError(f"checkpoint {directory!r} holds no {rest} component(s) and no base "
                                      "directory (config.pretrained) was given to take them from")
    abstract = to_components(abstract_params(model))
    components = {}
    for source, wanted, source_variant in ((directory, own, variant), (base, rest, "")):
        if not wanted:
            continue
        try:
            components.update(load_pretrained(source, wanted, abstract={name: abstract[name] for name in wanted},
                                              variant=source_variant))
        except CheckpointMismatchError as e:
            raise CheckpointMismatchError(f"checkpoint {source!r} does not fit the {model.size!r} model config: "
                                          f"{e}") from e
    return from_components(components)


def _stored_components(directory: str) -> set[str]:
    """The component names a converted directory's manifest lists (ConfigError if it is not a directory)."""
    if not epath.Path(directory).is_dir():
        raise ConfigError(f"checkpoint {directory!r} is not a directory: expected a converted checkpoint "
                          "(python -m stylecrafter_jax.convert import ... --out DIR)")
    return set(read_manifest(directory)["components"])


def resolve_params(config: ml_collections.ConfigDict, checkpoint: str | None) -> tuple[dict[str, Any], str]:
    """(params, a one-line description of where they come from) for `--checkpoint` or its absence.

    Without a checkpoint: the training export (`config.workdir/export`) if it exists, else a random
    initialisation (refused for the full model, whose random samples are only noise). Components a
    checkpoint lacks come from `config.pretrained` when that names a directory. `config.weights_variant`
    ("ema") selects that variant of the checkpoint.
    """
    base = config.get("pretrained") or None
    variant = config.get("weights_variant") or ""
    found = checkpoint if checkpoint is not None else os.path.join(config.workdir, EXPORT_SUBDIR)
    if checkpoint is not None or epath.Path(found).is_dir():
        params = load_params(found, config.model, base, variant)
        missing = sorted(set(required_components(config.model)) - _stored_components(found))
        line = f"weights: checkpoint {found}" if checkpoint is not None else \
            f"weights: the trained model in {found} (no --checkpoint given)"
        line += f" (its {variant} variant)" if variant else ""
        return params, line + (f", with {', '.join(missing)} from {base}" if missing else "")
    if config.model.size == "full":
        raise ConfigError(f"no --checkpoint given and no trained model in {found!r}: the full model needs "
                          "converted weights (python -m stylecrafter_jax.convert import ... --out DIR)")
    return (random_params(config.model, config.seed),
            f"weights: randomly initialised {config.model.size} model (seed {config.seed}); no --checkpoint "
            f"given and no trained model in {found}")
