"""Born-sharded initialisation: shapes first, then a jitted init that writes each shard in place."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator, Sequence

import flax.linen as nn
import jax
from jax.sharding import Mesh

from stylecrafter_jax.parallel.arrays import abstract_arrays
from stylecrafter_jax.parallel.rules import logical_shardings, validate_rules


def init_sharded(init_fn: Callable[..., Any], *args: Any, mesh: Mesh,
                 rules: Iterable[Sequence[Any]]) -> tuple[Any, Any]:
    """Run `init_fn(*args)` so that every leaf is created directly in its rule-given sharding.

    `init_fn` returns a tree of LogicallyPartitioned leaves (e.g. `model.init`); nothing is
    materialised whole on one device. Returns the unboxed tree and its NamedShardings (the same
    structure), for `jit` in/out shardings and for checkpoint restore targets.
    """
    abstract = jax.eval_shape(init_fn, *args)
    shardings = logical_shardings(abstract, mesh, rules)
    boxed = jax.jit(init_fn, out_shardings=shardings)(*args)
    return nn.unbox(boxed), shardings


def abstract_sharded(init_fn: Callable[..., Any], *args: Any, mesh: Mesh,
                     rules: Iterable[Sequence[Any]]) -> tuple[Any, Any]:
    """What `init_sharded` would return, as ShapeDtypeStructs carrying the shardings (nothing is created)."""
    abstract = jax.eval_shape(init_fn, *args)
    shardings = logical_shardings(abstract, mesh, rules)
    return abstract_arrays(nn.unbox(abstract), shardings), shardings


@contextlib.contextmanager
def activation_rules(mesh: Mesh, rules: Iterable[Sequence[Any]]) -> Iterator[None]:
    """Context for tracing model calls: the mesh and the rules that `nn.with_logical_constraint` reads.

    Use as `with activation_rules(mesh, rules): jax.jit(step)(...)`; the constraints are recorded
    while tracing, so the context must be active when the jitted function is first traced.
    """
    with jax.set_mesh(mesh), nn.logical_axis_rules(validate_rules(rules, mesh.axis_names)):
        yield
