"""The device mesh ("data", "fsdp", "tensor") from the `mesh` config, single- or multi-slice."""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

from stylecrafter_jax.errors import ConfigError

MESH_AXES: tuple[str, str, str] = ("data", "fsdp", "tensor")
"""Mesh axis names, from the least to the most communication-hungry."""

GRANULES = ("auto", "slice", "process")


def resolve_axis_sizes(sizes: Sequence[int], total: int, *, keys: Sequence[str],
                       unit: str = "devices") -> tuple[int, ...]:
    """Replace at most one -1 in `sizes` by what is left of `total`; check the product equals `total`.

    `keys` names the config keys of `sizes` and `unit` what `total` counts, for the error messages.
    """
    sizes = tuple(int(s) for s in sizes)
    for key, size in zip(keys, sizes):
        if size == 0 or size < -1:
            raise ConfigError(f"{key}={size}: a mesh axis size must be a positive integer or -1 (the rest)")
    free = [key for key, size in zip(keys, sizes) if size == -1]
    if len(free) > 1:
        raise ConfigError(f"{', '.join(free)} are all -1: at most one mesh axis size may be -1 (the rest)")
    known = math.prod(s for s in sizes if s != -1)
    described = " x ".join(f"{k}={s}" for k, s in zip(keys, sizes))
    if free:
        if total % known:
            raise ConfigError(f"{described}: the other axes ({known}) do not divide the {total} {unit}, "
                              f"so {free[0]}=-1 has no integer size")
        sizes = tuple(total // known if s == -1 else s for s in sizes)
    elif known != total:
        raise ConfigError(f"{described} = {known} does not match the {total} {unit}; "
                          f"make the product {total} or set one size to -1")
    return sizes


class MeshPlan(NamedTuple):
    """Resolved mesh sizes: in-slice (ICI), across-slice (DCN) and the unit the DCN sizes count."""

    ici: tuple[int, ...]
    dcn: tuple[int, ...]
    granule: str

    @property
    def shape(self) -> tuple[int, ...]:
        """The full mesh shape, the element-wise product of ICI and DCN sizes."""
        return tuple(i * d for i, d in zip(self.ici, self.dcn))


def plan_mesh(config: Mapping[str, Any], devices: Sequence[Any]) -> MeshPlan:
    """Resolve the -1 sizes of the `mesh` config for these devices and check every product."""
    granule = config.get("dcn_granule", "auto")
    if granule not in GRANULES:
        raise ConfigError(f"mesh.dcn_granule={granule!r}: expected one of {GRANULES}")
    if granule == "auto":
        granule = "slice" if len({getattr(d, "slice_index", 0) for d in devices}) > 1 else "process"
    count = len({getattr(d, "slice_index", 0) if granule == "slice" else d.process_index for d in devices})
    ici = tuple(int(config[axis]) for axis in MESH_AXES)
    dcn = tuple(int(config.get(f"dcn_{axis}", 1)) for axis in MESH_AXES)
    ici_keys = tuple(f"mesh.{axis}" for axis in MESH_AXES)
    if dcn == (1, 1, 1):
        return MeshPlan(resolve_axis_sizes(ici, len(devices), keys=ici_keys), dcn, granule)
    dcn_keys = tuple(f"mesh.dcn_{axis}" for axis in MESH_AXES)
    dcn = resolve_axis_sizes(dcn, count, keys=dcn_keys, unit={"slice": "slices", "process": "processes"}[granule])
    ici = resolve_axis_sizes(ici, len(devices) // count, keys=ici_keys, unit=f"devices per {granule}")
    return MeshPlan(ici, dcn, granule)


def create_mesh(config: Mapping[str, Any], devices: Sequence[Any] | None = None) -> Mesh:
    """Build the ("data", "fsdp", "tensor") mesh with Auto axis types from the `mesh` config.

    With every `dcn_*` size 1 the devices are laid out by `mesh_utils.create_device_mesh` (topology
    aware on TPU); otherwise the mesh is the product of an in-slice shape and an across-slice shape
    (`mesh_utils.create_hybrid_device_mesh`), whose unit is a TPU slice or, on GPU/CPU, a process
    (`mesh.dcn_granule`: "auto" = slices when the devices span several, else processes).
    """
    devices = list(jax.devices() if devices is None else devices)
    plan = plan_mesh(config, devices)
    if plan.dcn == (1, 1, 1):
        device_array = mesh_utils.create_device_mesh(plan.ici, devices, allow_split_physical_axes=True)
    else:
        device_array = mesh_utils.create_hybrid_device_mesh(
            plan.ici, plan.dcn, devices, process_is_granule=plan.granule == "process",
            allow_split_physical_axes=True)
    return Mesh(np.asarray(device_array), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def describe_mesh(mesh: Mesh) -> str:
    """One log line: axis sizes, device count and process count of the mesh."""
    sizes = ", ".join(f"{name}={size}" for name, size in mesh.shape.items())
    processes = len({d.process_index for d in mesh.devices.flat})
    return f"mesh({sizes}) over {mesh.devices.size} devices in {processes} process(es)"
