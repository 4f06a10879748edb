"""Tests for parallel/init.py: born-sharded init of a tiny model on 8 devices, activation rules,
and an orbax checkpoint saved on one mesh restored onto other mesh shapes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from stylecrafter_jax.models.layers import GroupNorm, LayerNorm, conv, dense, gelu
from stylecrafter_jax.parallel.arrays import batch_sharding, make_global_batch
from stylecrafter_jax.parallel.defaults import mesh_config
from stylecrafter_jax.parallel.init import activation_rules, init_sharded
from stylecrafter_jax.parallel.mesh import create_mesh
from stylecrafter_jax.parallel.rules import DEFAULT_RULES, logical_shardings, shard_report

MESHES = [(8, 1, 1), (2, 4, 1), (2, 2, 2)]
LARGE = 1024  # elements; every parameter at least this big must be split on fsdp/tensor meshes


class TinyConvMLP(nn.Module):
    """Two convs, a GroupNorm, a LayerNorm and an MLP, with activation constraints like the U-Net."""

    @nn.compact
    def __call__(self, x):
        x = nn.with_logical_constraint(
            x, ("activation_batch", "activation_height", "activation_width", "activation_embed"))
        h = gelu(GroupNorm(8)(conv(32, 3, name="conv_in")(x)))
        h = conv(64, 3, name="conv_mid")(h)
        tokens = h.reshape(h.shape[0], -1, h.shape[-1])
        tokens = nn.with_logical_constraint(tokens, ("activation_batch", "activation_length", "activation_embed"))
        tokens = gelu(dense(128, ("embed", "mlp"), name="fc1")(LayerNorm()(tokens)))
        return dense(64, ("mlp", "embed"), name="fc2")(tokens)


MODEL = TinyConvMLP()
X = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4, 4, 4)), jnp.float32)


def forward(params, x):
    return MODEL.apply({"params": params}, x)


@pytest.fixture(scope="module")
def reference():
    """Single-device init and forward: the values every mesh must reproduce."""
    variables = nn.unbox(jax.jit(MODEL.init)(jax.random.key(0), X))
    return variables, jax.jit(forward)(variables["params"], X)


@pytest.fixture(scope="module")
def sharded():
    """Born-sharded variables and their shardings for each mesh shape."""
    out = {}
    for sizes in MESHES:
        mesh = create_mesh(mesh_config(*sizes))
        variables, shardings = init_sharded(MODEL.init, jax.random.key(0), X, mesh=mesh, rules=DEFAULT_RULES)
        out[sizes] = (mesh, variables, shardings)
    return out


@pytest.mark.parametrize("sizes", MESHES)
def test_born_sharded_init_matches_single_device_values(sizes, sharded, reference):
    _, variables, shardings = sharded[sizes]
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), variables, reference[0])
    jax.tree.map(lambda a, s: assert_same_sharding(a.sharding, s, a.ndim), variables, shardings)


def assert_same_sharding(actual, expected, ndim):
    assert actual.is_equivalent_to(expected, ndim), (actual, expected)


@pytest.mark.parametrize("sizes", [(2, 4, 1), (2, 2, 2)])
def test_every_large_parameter_is_sharded(sizes, sharded):
    _, variables, _ = sharded[sizes]
    large = {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
             if leaf.size >= LARGE}
    assert len(large) == 4  # conv_in, conv_mid, fc1, fc2 kernels
    for path, leaf in large.items():
        per_device = {shard.data.size for shard in leaf.addressable_shards}
        assert max(per_device) < leaf.size, (path, leaf.sharding.spec)
    if sizes == (2, 2, 2):  # fsdp=2 x tensor=2: 2-D weights split four ways
        assert variables["params"]["fc1"]["kernel"].addressable_shards[0].data.shape == (32, 64)


def test_data_parallel_mesh_replicates_parameters(sharded):
    _, variables, _ = sharded[(8, 1, 1)]
    for leaf in jax.tree.leaves(variables):
        assert all(shard.data.size == leaf.size for shard in leaf.addressable_shards)


@pytest.mark.parametrize("sizes", [(2, 4, 1), (2, 2, 2)])
def test_report_matches_the_real_shards(sizes, sharded):
    mesh, variables, shardings = sharded[sizes]
    abstract = jax.eval_shape(MODEL.init, jax.random.key(0), X)
    report = shard_report(abstract, shardings)
    leaves = jax.tree.leaves(variables)
    assert [row.shard for row in report] == [leaf.addressable_shards[0].data.size for leaf in leaves]
    assert sum(row.shard for row in report) < sum(row.whole for row in report) / 2


@pytest.mark.parametrize("sizes", [(2, 4, 1), (2, 2, 2)])
def test_sharded_forward_with_activation_rules_matches_reference(sizes, sharded, reference):
    mesh, variables, _ = sharded[sizes]
    with activation_rules(mesh, DEFAULT_RULES):
        step = jax.jit(forward)
        text = step.lower(variables["params"], X).as_text()
        out = step(variables["params"], X)
    assert constraint_count(text) == 2  # both activation constraints reached the program
    assert constraint_count(jax.jit(forward).lower(variables["params"], X).as_text()) == 0
    np.testing.assert_allclose(np.asarray(out), np.asarray(reference[1]), rtol=1e-5, atol=1e-5)


def constraint_count(program_text):
    """Sharding constraints in a lowered program (Shardy or GSPMD spelling)."""
    return program_text.count("sdy.sharding_constraint") + program_text.count("@Sharding")


@pytest.mark.parametrize("target", [(2, 2, 2), (8, 1, 1)])
def test_checkpoint_saved_on_one_mesh_restores_on_another(target, sharded, reference, tmp_path):
    _, variables, _ = sharded[(2, 4, 1)]
    with ocp.CheckpointManager(tmp_path / "ckpt", options=ocp.CheckpointManagerOptions(create=True)) as manager:
        manager.save(3, args=ocp.args.StandardSave(variables))
        manager.wait_until_finished()
    mesh = create_mesh(mesh_config(*target))
    abstract = jax.eval_shape(MODEL.init, jax.random.key(0), X)
    shardings = logical_shardings(abstract, mesh, DEFAULT_RULES)
    targets = jax.tree.map(lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
                           nn.unbox(abstract), shardings)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        assert manager.latest_step() == 3
        restored = manager.restore(3, args=ocp.args.StandardRestore(targets))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), restored, reference[0])
    jax.tree.map(lambda a, s: assert_same_sharding(a.sharding, s, a.ndim), restored, shardings)
    assert restored["params"]["fc1"]["kernel"].sharding.mesh.shape == mesh.shape


TX = optax.multi_transform(
    {"train": optax.adamw(1e-2), "frozen": optax.set_to_zero()},
    {"conv_in": "frozen", "GroupNorm_0": "frozen", "conv_mid": "frozen", "LayerNorm_0": "train", "fc1": "train",
     "fc2": "train"})


def create_state(key):
    params = MODEL.init(key, X)["params"]
    return {"params": params, "opt": TX.init(params)}


def train_step(state, x):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(forward(p, x) ** 2))(state["params"])
    updates, opt = TX.update(grads, state["opt"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, loss


def two_steps(step, state, x):
    losses = []
    for _ in range(2):
        state, loss = step(state, x)
        losses.append(float(loss))
    return state, losses


@pytest.fixture(scope="module")
def reference_training():
    state = nn.unbox(jax.jit(create_state)(jax.random.key(0)))
    return two_steps(jax.jit(train_step), state, X)


@pytest.mark.parametrize("sizes", [(2, 4, 1), (2, 2, 2)])
def test_sharded_training_steps_match_one_device(sizes, reference_training):
    """Optimizer state is born sharded like its parameters; 2 AdamW steps equal the 1-device run."""
    mesh = create_mesh(mesh_config(*sizes))
    state, shardings = init_sharded(create_state, jax.random.key(0), mesh=mesh, rules=DEFAULT_RULES)
    adam = state["opt"].inner_states["train"].inner_state[0]
    assert adam.mu["fc1"]["kernel"].sharding.is_equivalent_to(state["params"]["fc1"]["kernel"].sharding, 2)
    assert adam.mu["fc1"]["kernel"].addressable_shards[0].data.size < adam.mu["fc1"]["kernel"].size
    batch = make_global_batch(np.asarray(X), mesh)
    with activation_rules(mesh, DEFAULT_RULES):
        step = jax.jit(train_step, in_shardings=(shardings, batch_sharding(mesh)), out_shardings=(shardings, None),
                       donate_argnums=0)
        state, losses = two_steps(step, state, batch)
    ref_state, ref_losses = reference_training
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert ref_losses[1] < ref_losses[0]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6),
                 state["params"], ref_state["params"])
    np.testing.assert_array_equal(np.asarray(state["params"]["conv_mid"]["kernel"]),
                                  np.asarray(ref_state["params"]["conv_mid"]["kernel"]))
