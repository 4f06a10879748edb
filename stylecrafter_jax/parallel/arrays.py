"""Global batch arrays sharded over ("data", "fsdp"), assembled from host-local numpy batches."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from stylecrafter_jax.errors import ConfigError, ShapeError
from stylecrafter_jax.trees import path_string

BATCH_AXES: tuple[str, str] = ("data", "fsdp")
"""The mesh axes the leading (batch) dimension of every input is split over."""


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading dimension split over data x fsdp, every other dimension whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def abstract_arrays(tree: Any, shardings: Any = None) -> Any:
    """ShapeDtypeStructs of a tree's arrays, carrying `shardings` (a matching tree) or each leaf's own sharding."""
    if shardings is None:
        shardings = jax.tree.map(lambda a: a.sharding, tree)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings)


def batch_shard_count(mesh: Mesh) -> int:
    """How many pieces the global batch is split into (data x fsdp)."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def _batch_shard_index(mesh: Mesh) -> dict[int, int]:
    """For each device id, the index of the batch piece it holds."""
    data, fsdp = mesh.axis_names.index("data"), mesh.axis_names.index("fsdp")
    return {device.id: index[data] * mesh.shape["fsdp"] + index[fsdp]
            for index, device in np.ndenumerate(mesh.devices)}


def process_data_shard(mesh: Mesh, process_index: int | None = None) -> tuple[int, int]:
    """(index, count) of this process's part of the global batch, for the per-host input pipeline.

    Usually (process_index, process_count); processes holding the same batch pieces (e.g. a tensor
    axis across hosts) get the same index and must read the same examples.
    """
    process_index = jax.process_index() if process_index is None else process_index
    pieces = _batch_shard_index(mesh)
    by_process: dict[int, frozenset[int]] = {}
    for device in mesh.devices.flat:
        by_process.setdefault(device.process_index, frozenset())
        by_process[device.process_index] |= {pieces[device.id]}
    distinct = sorted(set(by_process.values()), key=min)
    return distinct.index(by_process[process_index]), len(distinct)


def check_global_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    """Raise ConfigError unless the global batch splits evenly over data x fsdp (and the hosts)."""
    shards = batch_shard_count(mesh)
    if global_batch_size <= 0 or global_batch_size % shards:
        raise ConfigError(
            f"global batch size {global_batch_size} does not divide over data x fsdp = "
            f"{mesh.shape['data']} x {mesh.shape['fsdp']} = {shards} batch shards; use a multiple of {shards}")
    _, count = process_data_shard(mesh)
    if global_batch_size % count:
        raise ConfigError(f"global batch size {global_batch_size} does not divide over {count} hosts")


def process_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """Rows of the global batch that this process loads (after checking the global size)."""
    check_global_batch_size(global_batch_size, mesh)
    return global_batch_size // process_data_shard(mesh)[1]


def make_global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Turn a tree of host-local numpy arrays (this process's rows) into global sharded jax.Arrays.

    Every leaf must share the same leading size; the global batch is that size times the number of
    distinct host parts (`process_data_shard`), and must divide over data x fsdp.
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(local_batch)
    named = {path_string(path): np.asarray(leaf) for path, leaf in leaves}
    sizes = {name: array.shape[0] if array.ndim else None for name, array in named.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ShapeError(f"local batch leaves must share one leading (batch) size; got {sizes}")
    text = [name for name, array in named.items() if array.dtype.kind in "OSUV"]
    if text:
        raise ShapeError(f"local batch leaves {text} are not numeric arrays; tokenize or drop them first")
    local_size = next(iter(sizes.values()))
    _, count = process_data_shard(mesh)
    check_global_batch_size(local_size * count, mesh)
    sharding = batch_sharding(mesh)

    def to_global(leaf: Any) -> jax.Array:
        leaf = np.asarray(leaf)
        return jax.make_array_from_process_local_data(sharding, leaf, (local_size * count,) + leaf.shape[1:])

    return jax.tree.map(to_global, local_batch)
