"""The train state, and selection/merging of the trainable and frozen parts of the parameter tree."""

from __future__ import annotations

from typing import Any

import flax
import jax
from flax import traverse_util

from stylecrafter_jax.train.masks import TRAIN


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
