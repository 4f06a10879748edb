"""Tests for parallel/mesh.py: mesh shapes from config, -1 resolution, DCN plans and bad sizes."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.parallel.defaults import mesh_config
from stylecrafter_jax.parallel.mesh import MESH_AXES, create_mesh, describe_mesh, plan_mesh, resolve_axis_sizes


@pytest.mark.parametrize("sizes", [(8, 1, 1), (2, 4, 1), (2, 2, 2), (1, 8, 1), (1, 1, 8)])
def test_mesh_shapes_from_config(sizes):
    mesh = create_mesh(mesh_config(*sizes))
    assert mesh.axis_names == MESH_AXES
    assert tuple(mesh.shape.values()) == sizes
    assert mesh.axis_types == (AxisType.Auto,) * 3
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in jax.devices())


@pytest.mark.parametrize("sizes, expected", [
    ((1, -1, 1), (1, 8, 1)),
    ((-1, 2, 2), (2, 2, 2)),
    ((2, 1, -1), (2, 1, 4)),
])
def test_minus_one_takes_the_rest(sizes, expected):
    assert tuple(create_mesh(mesh_config(*sizes)).shape.values()) == expected


def test_default_config_is_fsdp_over_all_devices():
    mesh = create_mesh(mesh_config())
    assert dict(mesh.shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    assert describe_mesh(mesh) == "mesh(data=1, fsdp=8, tensor=1) over 8 devices in 1 process(es)"


@pytest.mark.parametrize("sizes, message", [
    ((2, 2, 4), r"mesh.data=2 x mesh.fsdp=2 x mesh.tensor=4 = 16 does not match the 8 devices"),
    ((2, 2, 1), r"= 4 does not match the 8 devices"),
    ((-1, -1, 1), r"mesh.data, mesh.fsdp are all -1"),
    ((3, -1, 1), r"the other axes \(3\) do not divide the 8 devices"),
    ((0, 8, 1), r"mesh.data=0: a mesh axis size must be a positive integer or -1"),
    ((1, -2, 1), r"mesh.fsdp=-2"),
])
def test_bad_sizes_are_config_errors(sizes, message):
    with pytest.raises(ConfigError, match=message):
        create_mesh(mesh_config(*sizes))


def test_auto_axes_accept_sharding_constraints():
    """With Explicit axes (jax.make_mesh's default) this constraint would raise; ours are Auto."""
    mesh = create_mesh(mesh_config(2, 2, 2))
    x = jnp.arange(16.0).reshape(8, 2)

    @jax.jit
    def f(x):
        return jax.lax.with_sharding_constraint(x * 2, P(("data", "fsdp"), "tensor"))

    with jax.set_mesh(mesh):
        y = f(x)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x) * 2)
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P(("data", "fsdp"), "tensor")), 2)


def fake_devices(slices, per_slice, processes_per_slice=1):
    """Stand-ins with the attributes plan_mesh reads (no JAX devices needed)."""
    per_process = per_slice // processes_per_slice
    return [SimpleNamespace(id=i, slice_index=i // per_slice, process_index=i // per_process)
            for i in range(slices * per_slice)]


def test_dcn_plan_over_slices():
    config = mesh_config(1, -1, 2)
    config.dcn_data = 2
    plan = plan_mesh(config, fake_devices(slices=2, per_slice=8, processes_per_slice=2))
    assert (plan.ici, plan.dcn, plan.granule) == ((1, 4, 2), (2, 1, 1), "slice")
    assert plan.shape == (2, 4, 2)


def test_dcn_plan_over_processes_with_minus_one():
    config = mesh_config(1, -1, 1)
    config.dcn_fsdp = -1
    plan = plan_mesh(config, fake_devices(slices=1, per_slice=8, processes_per_slice=4))
    assert (plan.ici, plan.dcn, plan.granule) == ((1, 2, 1), (1, 4, 1), "process")
    assert plan.shape == (1, 8, 1)


def test_dcn_granule_can_be_forced():
    config = mesh_config(1, -1, 1)
    config.dcn_data = 4
    config.dcn_granule = "process"
    plan = plan_mesh(config, fake_devices(slices=2, per_slice=4, processes_per_slice=2))
    assert (plan.ici, plan.dcn, plan.granule) == ((1, 2, 1), (4, 1, 1), "process")


def test_dcn_size_must_match_the_slice_count():
    config = mesh_config(1, -1, 1)
    config.dcn_data = 2
    with pytest.raises(ConfigError, match=r"mesh.dcn_data=2 .* = 2 does not match the 1 processes"):
        create_mesh(config)
    config.dcn_data = 4
    with pytest.raises(ConfigError, match=r"does not match the 2 slices"):
        plan_mesh(config, fake_devices(slices=2, per_slice=4))
    config.dcn_granule = "pods"
    with pytest.raises(ConfigError, match=r"mesh.dcn_granule='pods'"):
        plan_mesh(config, fake_devices(slices=2, per_slice=4))


def test_resolve_axis_sizes_names_the_keys():
    assert resolve_axis_sizes((2, -1), 6, keys=("a", "b")) == (2, 3)
    with pytest.raises(ConfigError, match=r"a=4 x b=1 = 4 does not match the 6 widgets"):
        resolve_axis_sizes((4, 1), 6, keys=("a", "b"), unit="widgets")
