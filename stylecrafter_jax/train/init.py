"""Shapes-first, born-sharded creation of the train state and of the frozen encoders' parameters."""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import traverse_util
from jax.sharding import Mesh

from configs.stages import stage_rules
from stylecrafter_jax.models.build import init_params, param_shapes
from stylecrafter_jax.parallel.init import init_sharded
from stylecrafter_jax.train.masks import label_params
from stylecrafter_jax.train.state import TrainState, trainable


def stage_labels(config: ml_collections.ConfigDict) -> dict:
    """The static label tree of the stage, computed on the abstract parameters."""
    return label_params(nn.unbox(param_shapes(config.model)), stage_rules(config.stage))


def create_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation, labels: dict, mesh: Mesh
                 ) -> tuple[TrainState, Any]:
    """A randomly initialised TrainState, every leaf created in its sharding; returns (state, shardings)."""

    def init(key):
        params_key, rng = jax.random.split(key)
        params = init_params(config.model, params_key)
        ema = jax.tree.map(jnp.copy, trainable(params, labels)) if config.train.ema_decay else None
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), ema=ema, rng=rng)

    return init_sharded(init, jax.random.PRNGKey(config.seed), mesh=mesh, rules=config.mesh.rules)


def copy_text_kv_to_style_kv(unet: dict) -> dict:
    """Initialise every style K/V from its layer's text K/V, as the reference does before training."""
    flat = traverse_util.flatten_dict(unet)
    out = dict(flat)
    for path in flat:
        name = "/".join(path)
        match = re.search(r"/attn2/processor/(to_[kv])_style/kernel$", name)
        if match:
            owner = path[:path.index("processor")]
            out[path] = flat[owner + (match.group(1), "kernel")]
    return traverse_util.unflatten_dict(out)
