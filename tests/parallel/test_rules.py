"""Tests for parallel/rules.py: default rules, rule validation, shape-safe shardings and the report."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from jax.sharding import PartitionSpec as P

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.parallel.defaults import mesh_config
from stylecrafter_jax.parallel.mesh import MESH_AXES, create_mesh
from stylecrafter_jax.parallel.rules import (
    DEFAULT_RULES, fit_spec, format_shard_report, logical_names, logical_shardings, normalize_rules,
    shard_report, unmapped_logical_names, validate_rules)

MODEL_NAMES = ["embed", "heads", "mlp", "norm", "conv_in", "conv_out", "vocab",
               "activation_batch", "activation_length", "activation_embed", "activation_heads",
               "activation_height", "activation_width"]


@pytest.fixture(scope="module")
def mesh222():
    return create_mesh(mesh_config(2, 2, 2))


@pytest.fixture(scope="module")
def mesh241():
    return create_mesh(mesh_config(2, 4, 1))


def boxed(shape, names):
    return nn.LogicallyPartitioned(jax.ShapeDtypeStruct(shape, jnp.float32), names)


def abstract_params():
    """An eval_shape-like tree: dense, conv, norm, an odd-sized dense and an unnamed leaf."""
    return {"params": {
        "proj": {"kernel": boxed((64, 128), ("embed", "mlp")), "bias": boxed((128,), ("mlp",))},
        "conv": {"kernel": boxed((3, 3, 32, 64), (None, None, "conv_in", "conv_out")),
                 "bias": boxed((64,), ("conv_out",))},
        "norm": {"scale": boxed((64,), ("norm",))},
        "odd": {"kernel": boxed((6, 9), ("embed", "mlp"))},
        "step": jax.ShapeDtypeStruct((), jnp.int32),
    }}


def test_default_rules_cover_the_model_vocabulary_and_the_mesh():
    assert validate_rules(DEFAULT_RULES, MESH_AXES) == DEFAULT_RULES
    assert {name for name, _ in DEFAULT_RULES} == set(MODEL_NAMES)  # every rule names an axis some module uses
    rules = dict(DEFAULT_RULES)
    assert rules["activation_batch"] == ("data", "fsdp")
    assert rules["embed"] == rules["conv_out"] == "fsdp"
    assert rules["heads"] == rules["mlp"] == "tensor"
    assert rules["norm"] is None
    assert rules["activation_embed"] is None and rules["conv_in"] is None  # see the XLA partitioner notes in rules.py


def test_unknown_mesh_axis_is_named():
    rules = DEFAULT_RULES + (("embed", ("fsdp", "model")),)
    with pytest.raises(ConfigError, match=rf"mesh.rules\[{len(DEFAULT_RULES)}\]=\('embed', \('fsdp', 'model'\)\) "
                                          r"names unknown mesh axis 'model'"):
        validate_rules(rules, MESH_AXES)


def test_logical_shardings_reject_unknown_axis(mesh222):
    with pytest.raises(ConfigError, match=r"mesh.rules\[0\]=\('embed', 'expert'\)"):
        logical_shardings(abstract_params(), mesh222, [("embed", "expert")])


@pytest.mark.parametrize("rule, message", [
    ("embed", r"mesh.rules\[0\]='embed': expected a pair"),
    (("embed", "fsdp", "x"), r"expected a pair"),
    (("embed", 3), r"mesh axes must be a name, a tuple of names or None, got int"),
])
def test_malformed_rules(rule, message):
    with pytest.raises(ConfigError, match=message):
        normalize_rules([rule])


def test_rules_from_lists_become_tuples():
    assert normalize_rules([["activation_batch", ["data", "fsdp"]], ["norm", None]]) == (
        ("activation_batch", ("data", "fsdp")), ("norm", None))


@pytest.mark.parametrize("spec, shape, expected", [
    (P("fsdp", "tensor"), (64, 128), P("fsdp", "tensor")),
    (P("fsdp", "tensor"), (6, 10), P(None, "tensor")),  # tensor has size 1: kept, a no-op
    (P("fsdp", "data"), (6, 3), P()),
    (P(("data", "fsdp")), (8, 3), P(("data", "fsdp"))),
    (P(("data", "fsdp")), (2, 3), P("data")),
    (P(("fsdp", "data")), (2, 3), P("data")),
    (P(), (5,), P()),
])
def test_fit_spec_drops_axes_that_do_not_divide(mesh241, spec, shape, expected):
    assert fit_spec(spec, shape, mesh241) == expected


def test_logical_shardings_follow_the_rules_and_fit_shapes(mesh222):
    shardings = logical_shardings(abstract_params(), mesh222, DEFAULT_RULES)["params"]
    assert shardings["proj"]["kernel"].spec == P("fsdp", "tensor")
    assert shardings["proj"]["bias"].spec == P("tensor")
    assert shardings["conv"]["kernel"].spec == P(None, None, None, "fsdp")  # conv_in stays whole (rules.py)
    assert shardings["conv"]["bias"].spec == P("fsdp")
    assert shardings["norm"]["scale"].spec == P()
    assert shardings["odd"]["kernel"].spec == P("fsdp")  # 9 does not divide by tensor=2
    assert shardings["step"].spec == P()


def test_odd_shapes_fall_back_to_replication_on_wider_meshes(mesh241):
    shardings = logical_shardings(abstract_params(), mesh241, DEFAULT_RULES)["params"]
    assert shardings["odd"]["kernel"].spec == P(None, "tensor")  # 6 does not divide by fsdp=4
    assert shardings["proj"]["kernel"].spec == P("fsdp", "tensor")


def test_shard_report_counts_per_device_elements(mesh222):
    tree = abstract_params()
    report = {row.path: row for row in shard_report(tree, logical_shardings(tree, mesh222, DEFAULT_RULES))}
    assert report["params/proj/kernel"].whole == 64 * 128
    assert report["params/proj/kernel"].shard == 32 * 64
    assert report["params/conv/kernel"].shard == 3 * 3 * 32 * 32  # output channels over fsdp only
    assert report["params/norm/scale"].shard == report["params/norm/scale"].whole == 64
    assert report["params/step"].whole == report["params/step"].shard == 1
    table = format_shard_report(list(report.values()))
    total = sum(r.whole for r in report.values())
    assert table.splitlines()[-1].split()[1] == f"{total:,}"


def test_logical_names_and_unmapped_names():
    tree = abstract_params()
    tree["params"]["extra"] = boxed((4,), ("frames_pos",))
    names = logical_names(tree)["params"]
    assert names["conv"]["kernel"] == (None, None, "conv_in", "conv_out")
    assert names["step"] is None
    assert unmapped_logical_names(tree, DEFAULT_RULES) == {"frames_pos"}
