"""Tests for parallel/arrays.py: global batches from host-local numpy data, and bad batch sizes."""

import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from stylecrafter_jax.errors import ConfigError, ShapeError
from stylecrafter_jax.parallel.defaults import mesh_config
from stylecrafter_jax.parallel.arrays import (
    batch_shard_count, batch_sharding, check_global_batch_size, make_global_batch, process_batch_size,
    process_data_shard)
from stylecrafter_jax.parallel.mesh import create_mesh

MESHES = [(8, 1, 1), (2, 4, 1), (2, 2, 2)]


@pytest.fixture(scope="module")
def meshes():
    return {sizes: create_mesh(mesh_config(*sizes)) for sizes in MESHES}


def local_batch(rows):
    return {"video": np.arange(rows * 2 * 3, dtype=np.float32).reshape(rows, 2, 3),
            "tokens": np.arange(rows * 5, dtype=np.int32).reshape(rows, 5)}


@pytest.mark.parametrize("sizes", MESHES)
def test_global_batch_holds_the_local_rows_split_over_data_and_fsdp(sizes, meshes):
    mesh = meshes[sizes]
    shards = sizes[0] * sizes[1]
    batch = local_batch(16)
    global_batch = make_global_batch(batch, mesh)
    assert batch_shard_count(mesh) == shards
    for name, leaf in global_batch.items():
        assert leaf.shape == batch[name].shape and leaf.dtype == batch[name].dtype
        assert leaf.sharding.spec == P(("data", "fsdp"))
        np.testing.assert_array_equal(np.asarray(leaf), batch[name])
        rows = 16 // shards
        for shard in leaf.addressable_shards:
            start = shard.index[0].start or 0
            assert shard.data.shape[0] == rows
            np.testing.assert_array_equal(np.asarray(shard.data), batch[name][start:start + rows])
    starts = {shard.index[0].start or 0 for shard in global_batch["video"].addressable_shards}
    assert len(starts) == shards  # tensor replicas hold the same rows; data x fsdp pieces differ


def test_batch_sharding_is_over_data_and_fsdp(meshes):
    assert batch_sharding(meshes[(2, 2, 2)]).spec == P(("data", "fsdp"))


def test_single_process_reads_the_whole_batch(meshes):
    assert process_data_shard(meshes[(2, 4, 1)]) == (0, 1)
    assert process_batch_size(16, meshes[(2, 4, 1)]) == 16


@pytest.mark.parametrize("sizes, batch, shards", [((2, 4, 1), 6, 8), ((2, 2, 2), 2, 4), ((8, 1, 1), 12, 8)])
def test_batch_that_does_not_divide_is_a_config_error(sizes, batch, shards, meshes):
    mesh = meshes[sizes]
    message = rf"global batch size {batch} does not divide over data x fsdp = {sizes[0]} x {sizes[1]} = {shards}"
    with pytest.raises(ConfigError, match=message):
        check_global_batch_size(batch, mesh)
    with pytest.raises(ConfigError, match=message):
        make_global_batch(local_batch(batch), mesh)


def test_tensor_axis_does_not_split_the_batch(meshes):
    check_global_batch_size(4, meshes[(2, 2, 2)])  # 4 over data x fsdp = 4; tensor=2 holds replicas


def test_leaves_with_different_batch_sizes_are_a_shape_error(meshes):
    batch = {"video": np.zeros((8, 3)), "tokens": np.zeros((4, 5))}
    with pytest.raises(ShapeError, match=r"share one leading \(batch\) size; got \{'tokens': 4, 'video': 8\}"):
        make_global_batch(batch, meshes[(8, 1, 1)])
    with pytest.raises(ShapeError, match=r"share one leading"):
        make_global_batch({"step": np.zeros(())}, meshes[(8, 1, 1)])


def test_text_leaves_are_a_shape_error(meshes):
    batch = {"image": np.zeros((8, 2)), "caption": np.array(["a cat"] * 8)}
    with pytest.raises(ShapeError, match=r"local batch leaves \['caption'\] are not numeric arrays"):
        make_global_batch(batch, meshes[(8, 1, 1)])
