"""The frozen base weights of a run: loaded from a converted checkpoint directory, or random (the toy)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import ml_collections
from jax.sharding import Mesh

from stylecrafter_jax.checkpoints.components import trained_tree_to_components
from stylecrafter_jax.checkpoints.pretrained import load_pretrained, read_manifest
from stylecrafter_jax.conditioning.frozen import build_encoders, init_encoder_params
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.build import param_shapes
from stylecrafter_jax.parallel.arrays import abstract_arrays
from stylecrafter_jax.parallel.init import init_sharded
from stylecrafter_jax.parallel.rules import logical_shardings
from stylecrafter_jax.train.state import merge

ENCODER_NAMES = ("text_encoder", "image_encoder", "vae")


def load_encoder_params(config: ml_collections.ConfigDict, mesh: Mesh) -> dict[str, Any]:
    """The frozen encoders' parameters in their shardings: from `config.pretrained`, or random without one."""
    encoders = build_encoders(config.model)
    init_encoders = functools.partial(init_encoder_params, encoders)
    key = jax.random.PRNGKey(config.seed + 2)
    if not config.pretrained:
        return init_sharded(init_encoders, key, mesh=mesh, rules=config.mesh.rules)[0]
    encoder_names = [n for n in ENCODER_NAMES if n != "vae" or encoders.vae is not None]
    missing = [n for n in encoder_names if n not in _available(config)]
    if missing:
        raise ConfigError(f"config.pretrained {config.pretrained!r} provides no {', '.join(missing)}: the frozen "
                          "encoders must come from the converted directory (convert import --open-clip ...)")
    encoder_abstract = jax.eval_shape(init_encoders, key)
    abstract = {name: _with_shardings(encoder_abstract[name], mesh, config) for name in encoder_names}
    return load_pretrained(config.pretrained, encoder_names, abstract=abstract)


def load_base_weights(config: ml_collections.ConfigDict, mesh: Mesh, *, log: Callable[[str], None] = print
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the base leaves of the {'unet', 'adapter'} tree that `config.pretrained` gives, empty without one;
    the frozen encoders' parameters), every leaf restored straight into its sharding (for `create_state`)."""
    encoder_params = load_encoder_params(config, mesh)
    if not config.pretrained:
        log("base weights: random initialisation (no config.pretrained)")
        return {}, encoder_params
    available = _available(config)
    components = trained_tree_to_components(_with_shardings(param_shapes(config.model), mesh, config))
    abstract = {name: components[name] for name in ("unet", "adapter") if name in available}
    loaded = load_pretrained(config.pretrained, sorted(abstract), abstract=abstract) if abstract else {}
    base: dict[str, Any] = {}
    if "unet" in loaded:
        base = merge(base, {"unet": loaded["unet"]})
    if "adapter" in loaded:
        base = merge(base, {"adapter": loaded["adapter"]["adapter"], "unet": loaded["adapter"]["processors"]})
    log(f"base weights from {config.pretrained}: {', '.join(sorted([*loaded, *encoder_params]))}")
    return base, encoder_params


def _available(config: ml_collections.ConfigDict) -> set[str]:
    """The components of `config.pretrained` this run takes (all, or those of `config.pretrained_components`)."""
    available = set(read_manifest(config.pretrained).get("components", {}))
    if config.pretrained_components:
        available &= set(config.pretrained_components.split(","))
    return available


def _with_shardings(boxed_abstract: Any, mesh: Mesh, config: ml_collections.ConfigDict) -> Any:
    """ShapeDtypeStructs carrying the rule-given shardings of a boxed abstract tree."""
    shardings = logical_shardings(boxed_abstract, mesh, config.mesh.rules)
    return abstract_arrays(nn.unbox(boxed_abstract), shardings)
