"""The train state: stage labels of the parameters, TrainState, trainable/frozen selection and merging, what a
checkpoint holds of it, and its shapes-first, born-sharded creation."""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util
from jax.sharding import Mesh

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.build import init_params, param_shapes
from stylecrafter_jax.parallel.init import abstract_sharded, init_sharded
from stylecrafter_jax.train.stages import stage_rules
from stylecrafter_jax.trees import path_string

TRAIN, FROZEN = "train", "frozen"


# ===== Stage labels: every parameter labelled by the first matching (regex, label) rule of the stage =====

def label_params(params: Any, rules: Sequence[tuple[str, str]]) -> Any:
    """A pytree of labels ("train"/"frozen") with the structure of `params`."""
    compiled = [(re.compile(pattern), label) for pattern, label in rules]
    for _, label in compiled:
        if label not in (TRAIN, FROZEN):
            raise ConfigError(f"stage rule label {label!r}: expected {TRAIN!r} or {FROZEN!r}")

    def label(path, _):
        name = path_string(path)
        for pattern, lab in compiled:
            if pattern.search(name):
                return lab
        raise ConfigError(f"parameter {name!r} matches no stage rule; end the rules with ('.*', 'frozen')")

    return jax.tree_util.tree_map_with_path(label, params)


def count_by_label(params: Any, labels: Any) -> dict[str, int]:
    """Number of parameters per label (works on arrays and ShapeDtypeStructs)."""
    counts = {TRAIN: 0, FROZEN: 0}
    for leaf, lab in zip(jax.tree.leaves(params), jax.tree.leaves(labels)):
        counts[lab] += int(np.prod(leaf.shape))
    return counts


def stage_labels(config: ml_collections.ConfigDict) -> dict:
    """The static label tree of the stage, computed on the abstract parameters."""
    return label_params(nn.unbox(param_shapes(config.model)), stage_rules(config.stage))


# ===== The state, and its trainable and frozen parts =====

@flax.struct.dataclass
class TrainState:
    """step, the full parameter tree (frozen leaves never change), optimizer state (trainable leaves only),
    the EMA of the trainable leaves (None when off) and the RNG key."""

    step: jax.Array
    params: Any
    opt_state: Any
    ema: Any
    rng: jax.Array


def select(tree: dict, labels: dict, label: str) -> dict:
    """The nested sub-dict of the leaves whose label is `label` (a prefix-labelled tree works too)."""
    flat_tree = traverse_util.flatten_dict(tree)
    flat_labels = traverse_util.flatten_dict(labels)
    return traverse_util.unflatten_dict({k: v for k, v in flat_tree.items() if flat_labels[k] == label})


def merge(*trees: dict) -> dict:
    """Deep-merge nested dicts with disjoint leaves."""
    flat: dict = {}
    for tree in trees:
        flat.update(traverse_util.flatten_dict(tree))
    return traverse_util.unflatten_dict(flat)


def trainable(tree: dict, labels: dict) -> dict:
    """The trainable leaves of `tree`."""
    return select(tree, labels, TRAIN)


def checkpoint_tree(state: TrainState, labels: dict) -> dict:
    """What a checkpoint holds: the trainable leaves, optimizer state, EMA, step and RNG (no frozen leaves)."""
    return {"step": state.step, "trainable": trainable(state.params, labels), "opt_state": state.opt_state,
            "ema": state.ema, "rng": state.rng}


def from_checkpoint_tree(state: TrainState, tree: dict) -> TrainState:
    """`state` with what a restored `checkpoint_tree` holds in place (its frozen leaves kept)."""
    return state.replace(step=tree["step"], params=merge(state.params, tree["trainable"]),
                         opt_state=tree["opt_state"], ema=tree["ema"], rng=tree["rng"])


# ===== Creation, every leaf born in its sharding =====

def create_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation, labels: dict, mesh: Mesh,
                 base: dict | None = None, abstract: bool = False) -> tuple[TrainState, Any]:
    """A TrainState with every leaf created in its sharding; returns (state, shardings).

    `base` (part of the {'unet', 'adapter'} tree, arrays already in their shardings: the converted
    base weights) gives those leaves, which are never initialised. Frozen leaves it does not give are
    random, with every all-zero kernel (the zero-initialised output layers) redrawn, since a frozen zero
    output head would zero every gradient; trained leaves keep the model's initialisation. `abstract`:
    ShapeDtypeStructs carrying the shardings instead (nothing is created).
    """
    base = base or {}
    flat_labels = traverse_util.flatten_dict(labels)
    stage1_kv = config.stage == "stage1" and "adapter" not in base
    key = jax.random.PRNGKey(config.seed)

    def init(key, base):
        params_key, rng = jax.random.split(key)
        flat = traverse_util.flatten_dict(init_params(config.model, params_key))
        for path, leaf in traverse_util.flatten_dict(base).items():
            flat[path] = flat[path].replace_boxed(leaf)
        params = traverse_util.unflatten_dict(flat)
        if stage1_kv:
            params["unet"] = copy_text_kv_to_style_kv(params["unet"])
        ema = jax.tree.map(jnp.copy, trainable(params, labels)) if config.train.ema_decay else None
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), ema=ema, rng=rng)

    if abstract:
        return abstract_sharded(init, key, base, mesh=mesh, rules=config.mesh.rules)
    state, shardings = init_sharded(init, key, base, mesh=mesh, rules=config.mesh.rules)
    given = set(traverse_util.flatten_dict(base))
    candidates = [path for path in sorted(flat_labels)
                  if path not in given and flat_labels[path] == FROZEN and path[-1] == "kernel"]
    params = _redraw_zero_kernels(state.params, shardings.params, candidates, jax.random.fold_in(key, 1))
    return state.replace(params=params), shardings


def _redraw_zero_kernels(params: dict, shardings: dict, candidates: Sequence[tuple], key: jax.Array) -> dict:
    """`params` with each all-zero kernel among `candidates` replaced by N(0, 1/fan_in) values in its sharding.

    The kernel at position i of the sorted parameter paths draws from fold_in(key, i). Only the kernels found
    zero are drawn (a second, small program), so the init program carries no random draw per frozen kernel.
    """
    if not candidates:
        return params
    flat = traverse_util.flatten_dict(params)
    index = {path: i for i, path in enumerate(sorted(flat))}
    all_zero = jax.jit(lambda kernels: jnp.stack([jnp.all(k == 0) for k in kernels]))
    is_zero = all_zero([flat[path] for path in candidates])
    zero = [path for path, flag in zip(candidates, jax.device_get(is_zero)) if flag]
    if not zero:
        return params
    flat_shardings = traverse_util.flatten_dict(shardings)

    def draw() -> list[jax.Array]:
        return [jax.random.normal(jax.random.fold_in(key, index[path]), flat[path].shape, flat[path].dtype)
                / math.sqrt(max(1, math.prod(flat[path].shape[:-1]))) for path in zero]

    drawn = jax.jit(draw, out_shardings=[flat_shardings[path] for path in zero])()
    return traverse_util.unflatten_dict({**flat, **dict(zip(zero, drawn))})


def copy_text_kv_to_style_kv(unet: dict) -> dict:
    """Initialise every style K/V from its layer's text K/V (a copy), as the reference does before training."""
    flat = traverse_util.flatten_dict(unet)
    out = dict(flat)
    for path in flat:
        name = "/".join(path)
        match = re.search(r"/attn2/processor/(to_[kv])_style/kernel$", name)
        if match:
            owner = path[:path.index("processor")]
            out[path] = jax.tree.map(jnp.copy, flat[owner + (match.group(1), "kernel")])
    return traverse_util.unflatten_dict(out)
