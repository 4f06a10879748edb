"""Strict import and export of a Flax parameter tree through a per-leaf key function.

A key function maps a Flax leaf (its "/"-joined path and rank) to an `official_keys.KeySpec`: the
torch key, the layout transform of `torch_layout`, and, for the q/k/v row blocks of a packed
`in_proj_*` tensor, the block index (`official_keys.unet_key` and `adapter_key` fit too). The
expected torch shapes follow from the Flax shapes, so a state dict is checked as a whole (missing,
unexpected and mis-shaped keys in one error) before anything is converted.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping

import flax.linen as nn
import numpy as np
from flax import traverse_util

from stylecrafter_jax.checkpoints.official_keys import KeySpec
from stylecrafter_jax.checkpoints.torch_layout import check_state_dict, split_packed, to_flax, to_torch

PACKED_PARTS = 3
KeyFn = Callable[[str, int], KeySpec]


def flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"/"-joined path: shape} of a (possibly boxed, possibly abstract) parameter tree."""
    flat = traverse_util.flatten_dict(nn.unbox(tree), sep="/")
    return {path: tuple(leaf.shape) for path, leaf in flat.items()}


def expected_torch_shapes(shapes: Mapping[str, tuple[int, ...]], key_fn: KeyFn) -> dict[str, tuple[int, ...]]:
    """The torch key → torch shape table implied by the Flax shapes."""
    expected = {}
    for path, shape in shapes.items():
        spec = key_fn(path, len(shape))
        torch_shape = to_torch(np.broadcast_to(np.float32(0), shape), spec.transform).shape
        if spec.part is not None:
            torch_shape = (torch_shape[0] * PACKED_PARTS,) + torch_shape[1:]
        expected[spec.torch_key] = tuple(torch_shape)
    return expected


def import_state_dict(state_dict: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], key_fn: KeyFn, *,
                      source: str, ignore: Iterable[str] = ()) -> dict:
    """Nested float32 numpy parameters for `shapes`, read from `state_dict` after a strict check.

    Keys starting with an `ignore` prefix may be present without being used; any other surplus,
    missing or mis-shaped key raises one CheckpointMismatchError naming them all.
    """
    got = {key: tuple(np.shape(value)) for key, value in state_dict.items()}
    check_state_dict(expected_torch_shapes(shapes, key_fn), got, source=source, ignore=ignore)
    flat = {}
    for path, shape in shapes.items():
        spec = key_fn(path, len(shape))
        tensor = np.asarray(state_dict[spec.torch_key])
        if spec.part is not None:
            tensor = split_packed(tensor, PACKED_PARTS)[spec.part]
        flat[path] = np.asarray(to_flax(tensor, spec.transform), dtype=np.float32)
    return traverse_util.unflatten_dict(flat, sep="/")


def export_state_dict(params: Any, key_fn: KeyFn) -> dict[str, np.ndarray]:
    """The torch state dict (numpy, contiguous) of a parameter tree; packed q/k/v are concatenated."""
    blocks: dict[str, dict[int | None, np.ndarray]] = defaultdict(dict)
    for path, leaf in traverse_util.flatten_dict(nn.unbox(params), sep="/").items():
        leaf = np.asarray(leaf)
        spec = key_fn(path, leaf.ndim)
        blocks[spec.torch_key][spec.part] = to_torch(leaf, spec.transform)
    # np.asarray(order="C"), not np.ascontiguousarray, which turns 0-d tensors (logit_scale) into shape (1,).
    return {key: np.asarray(parts[None] if None in parts
                            else np.concatenate([parts[i] for i in range(PACKED_PARTS)], axis=0), order="C")
            for key, parts in blocks.items()}


def select_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries under `prefix`, with the prefix removed (all entries when it is empty)."""
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def add_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries with `prefix` put in front of every key."""
    return {prefix + key: value for key, value in state_dict.items()}
