"""Logical axis rules (MaxText vocabulary) and the shardings they give a tree of parameters.

The logical names, each used by some module of `models/`:
- activation_batch: the leading (batch, or batch x frames) dimension of activations;
- activation_heads: the heads of the (batch, length, heads, head_dim) arrays attention kernels take;
- activation_embed: the channels of U-Net feature maps and token sequences;
- activation_length: the tokens of a spatial transformer's (batch x frames, h x w, channels) sequence;
- activation_height, activation_width: the spatial dimensions of (batch x frames, h, w, channels) maps;
- embed: the model-width side of a dense kernel, and the width of embeddings and learned queries;
- heads: the attention side (heads x head_dim) of query, key, value and output kernels;
- mlp: the hidden side of feed-forward and embedding-MLP kernels;
- vocab: the rows of the text tower's token embedding;
- conv_in, conv_out: the input and output channels of convolution kernels;
- norm: the scale and bias of GroupNorm and LayerNorm.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, NamedTuple, Sequence

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.trees import path_string

MeshAxes = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxes], ...]

DEFAULT_RULES: Rules = (
    # Activations: the batch over data and fsdp, heads over tensor, the rest whole. Channels stay whole
    # (Megatron without sequence parallelism): with activation_embed -> tensor, XLA's SPMD partitioner
    # (jax 0.10.2, Shardy and GSPMD alike) gives wrong weight gradients for a kernel sharded
    # (tensor, fsdp) on a mesh where data, fsdp and tensor are all > 1.
    ("activation_batch", ("data", "fsdp")),
    ("activation_heads", "tensor"),
    ("activation_embed", None),
    ("activation_length", None),
    ("activation_height", None),
    ("activation_width", None),
    # Parameters: the model dimension over fsdp, the wide dimensions over tensor. Conv kernels split their
    # output channels over fsdp only: with input channels over tensor as well, the same partitioner gives a
    # wrong U-Net forward on a mesh where fsdp and tensor are both > 1 (tiny U-Net on 2x2x2: the first
    # ResBlock conv after the downsample is off by ~0.3; no small program reproduced it).
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("conv_out", "fsdp"),
    ("conv_in", None),
    ("norm", None),
)
"""Rules in priority order: a logical name takes the first of its rules whose mesh axes are still free."""


def normalize_rules(rules: Iterable[Sequence[Any]]) -> Rules:
    """Rules as tuples (a config may hold lists), with the shape of each rule checked."""
    normalized = []
    for index, rule in enumerate(rules):
        if isinstance(rule, str) or len(rule) != 2 or not isinstance(rule[0], str):
            raise ConfigError(f"mesh.rules[{index}]={rule!r}: expected a pair (logical name, mesh axes)")
        name, axes = rule
        if isinstance(axes, (list, tuple)):
            axes = tuple(axes)
        elif axes is not None and not isinstance(axes, str):
            raise ConfigError(f"mesh.rules[{index}]={rule!r}: mesh axes must be a name, a tuple of names "
                              f"or None, got {type(axes).__name__}")
        normalized.append((name, axes))
    return tuple(normalized)


def validate_rules(rules: Iterable[Sequence[Any]], mesh_axes: Sequence[str]) -> Rules:
    """Normalize the rules and check that every one names only axes of the mesh."""
    rules = normalize_rules(rules)
    for index, (name, axes) in enumerate(rules):
        named = (axes,) if isinstance(axes, str) else axes or ()
        unknown = [axis for axis in named if axis not in mesh_axes]
        if unknown:
            raise ConfigError(f"mesh.rules[{index}]=({name!r}, {axes!r}) names unknown mesh axis "
                              f"{unknown[0]!r}; the mesh axes are {tuple(mesh_axes)}")
    return rules


def fit_spec(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
    """Drop the mesh axes that do not divide their dimension, so any shape shards safely.

    Within one dimension each axis is kept if it and the axes kept before it divide the size
    together; a dimension left with no axis is replicated.
    """
    fitted = []
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        axes = (entry,) if isinstance(entry, str) else entry or ()
        kept: list[str] = []
        for axis in axes:
            if dim % (math.prod(mesh.shape[a] for a in kept) * mesh.shape[axis]) == 0:
                kept.append(axis)
        fitted.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    while fitted and fitted[-1] is None:
        fitted.pop()
    return PartitionSpec(*fitted)


def fit_shardings(shardings: Any, abstract_tree: Any) -> Any:
    """Apply `fit_spec` to every NamedSharding against the shape of the matching (unboxed) leaf."""
    def fit(sharding: NamedSharding, leaf: Any) -> NamedSharding:
        return NamedSharding(sharding.mesh, fit_spec(sharding.spec, leaf.shape, sharding.mesh))

    return jax.tree.map(fit, shardings, nn.unbox(abstract_tree))


def logical_shardings(abstract_tree: Any, mesh: Mesh, rules: Iterable[Sequence[Any]]) -> Any:
    """NamedShardings for an `eval_shape`d tree of LogicallyPartitioned leaves, safe for any shape.

    The tree structure is that of `nn.unbox(abstract_tree)`, so it serves as `out_shardings` of a
    jitted init (boxes are one-child nodes) and as the sharding of the unboxed parameters. Leaves
    without logical names are replicated; dimensions a mesh axis does not divide are replicated.
    """
    rules = validate_rules(rules, mesh.axis_names)
    specs = nn.get_partition_spec(abstract_tree)
    return fit_shardings(nn.logical_to_mesh_sharding(specs, mesh, rules), abstract_tree)


def logical_names(abstract_tree: Any) -> Any:
    """The logical axis names of every leaf (None for a leaf that has none), in the unboxed structure."""
    return jax.tree.map(lambda leaf: leaf.names if isinstance(leaf, nn.LogicallyPartitioned) else None,
                        abstract_tree, is_leaf=lambda leaf: isinstance(leaf, nn.Partitioned))


def unmapped_logical_names(abstract_tree: Any, rules: Iterable[Sequence[Any]]) -> set[str]:
    """Logical names used by the tree that no rule mentions (they are silently replicated)."""
    ruled = {name for name, _ in normalize_rules(rules)}
    names = jax.tree.leaves(logical_names(abstract_tree), is_leaf=lambda x: isinstance(x, tuple))
    return {name for leaf in names if leaf for name in leaf if name is not None} - ruled


class ShardInfo(NamedTuple):
    """One leaf of a sharding report: its path, spec, and whole vs per-device element counts."""

    path: str
    shape: tuple[int, ...]
    spec: PartitionSpec
    whole: int
    shard: int


def shard_report(abstract_tree: Any, shardings: Any) -> list[ShardInfo]:
    """Per leaf: the whole element count and the element count of one device's shard."""
    leaves = jax.tree_util.tree_leaves_with_path(nn.unbox(abstract_tree))
    report = []
    for (path, leaf), sharding in zip(leaves, jax.tree.leaves(shardings)):
        shape = tuple(leaf.shape)
        report.append(ShardInfo(path=path_string(path), shape=shape, spec=sharding.spec, whole=math.prod(shape),
                                shard=math.prod(sharding.shard_shape(shape))))
    return report


def format_shard_report(report: Sequence[ShardInfo]) -> str:
    """A table of the report with totals: what one device holds against the whole tree."""
    width = max((len(row.path) for row in report), default=4)
    lines = [f"{'path':<{width}}  {'shape':<20} {'spec':<32} {'whole':>12} {'per device':>12}"]
    for row in report:
        lines.append(f"{row.path:<{width}}  {str(row.shape):<20} {str(tuple(row.spec)):<32} "
                     f"{row.whole:>12,} {row.shard:>12,}")
    whole = sum(row.whole for row in report)
    shard = sum(row.shard for row in report)
    lines.append(f"{'total':<{width}}  {'':<20} {'':<32} {whole:>12,} {shard:>12,}")
    return "\n".join(lines)

