"""Splash attention on device meshes: inside `jax.shard_map` on 8 fake CPU devices (interpret mode) the sharded
tiny train step equals the one with XLA attention, and with libtpu the step AOT-compiles for a v5p-8 topology with
the real Mosaic kernel."""

import jax
import numpy as np
import pytest
from flax import traverse_util

from configs.stage1 import get_config
from stylecrafter_jax.diffusion.schedule import make_schedule
from stylecrafter_jax.models.build import build_adapter, build_unet
from stylecrafter_jax.parallel.arrays import abstract_arrays, batch_sharding
from stylecrafter_jax.parallel.init import activation_rules
from stylecrafter_jax.parallel.mesh import create_mesh
from stylecrafter_jax.train.state import TRAIN, create_state, select, stage_labels
from stylecrafter_jax.train.step import LossModels, compile_step, make_optimizer, make_step_fn
from tests.conftest import encoded_batch, random_start

pytestmark = pytest.mark.heavy  # its tests run first (tests/conftest.py)

BATCH = 4
# Stage 1 on 16x8 images (temporal layers skipped): the top level's spatial self-attention has 128 tokens (one
# splash block) and 2 heads; the middle block's at 8x4 (32 tokens) and every cross-attention stay on XLA.
LATENT = (16, 8)
MESH = (2, 1, 2)  # batch over data (x fsdp), the 2 heads over tensor


def _config(attention, mesh=MESH):
    config = get_config("tiny,synthetic")
    with config.unlocked():
        config.model.attention = attention
        config.model.frames, (config.model.latent_height, config.model.latent_width) = 1, LATENT
        config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh
        config.train.learning_rate = 1e-3
    return config


def _step_fn(config, labels, tx):
    models = LossModels(build_unet(config.model), build_adapter(config.model), make_schedule(),
                        np.zeros((1, 77, config.model.unet.context_dim), np.float32))
    return make_step_fn(models, tx, labels, config.train, "skip")


@pytest.fixture(scope="module")
def cpu_run():
    """Mesh, optimizer, state shardings and a random start on 4 fake CPU devices."""
    config = _config("xla")
    mesh = create_mesh(config.mesh, jax.devices()[:int(np.prod(MESH))])
    labels = stage_labels(config)
    tx = make_optimizer(config.train, labels)
    start, shardings = random_start(config, tx, labels, mesh)
    return dict(mesh=mesh, labels=labels, tx=tx, shardings=shardings, start=start,
                batch=jax.device_put(encoded_batch(config.model, BATCH, np.random.default_rng(1)),
                                         batch_sharding(mesh)))


def _one_step(attention, run):
    """One compiled step with `attention`: the metrics, the new parameters and the pallas_calls in the step's jaxpr."""
    config, mesh = _config(attention), run["mesh"]
    step_fn = _step_fn(config, run["labels"], run["tx"])
    state, batch = jax.device_put(run["start"], run["shardings"]), run["batch"]
    with activation_rules(mesh, config.mesh.rules):
        kernels = str(jax.make_jaxpr(step_fn)(state, batch)).count("pallas_call")
        step, _ = compile_step(step_fn, state, abstract_arrays(batch), state_shardings=run["shardings"],
                               batch_shardings=batch_sharding(mesh), log=lambda _: None)
    state, metrics = step(state, batch)
    return dict(metrics=jax.device_get(metrics), params=jax.device_get(state.params), kernels=kernels)


def test_splash_under_shard_map_equals_xla_in_the_sharded_train_step(cpu_run):
    xla, splash = _one_step("xla", cpu_run), _one_step("splash_interpret", cpu_run)
    # Three top-level self-attentions (one down, two up), each a forward kernel and backward kernels.
    assert xla["kernels"] == 0 and splash["kernels"] >= 3
    assert bool(splash["metrics"]["finite"])
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(splash["metrics"][key], xla["metrics"][key], rtol=1e-5, err_msg=key)
    labels = cpu_run["labels"]
    got, expected, start = (traverse_util.flatten_dict(select(params, labels, TRAIN))
                            for params in (splash["params"], xla["params"], cpu_run["start"].params))
    assert len(expected) > 20
    moved = 0
    for key, value in expected.items():
        # One Adam step at lr 1e-3 moves a weight by up to 1e-3 (the sign of its gradient); 2e-4 is a fifth of it.
        np.testing.assert_allclose(got[key], value, rtol=0, atol=2e-4, err_msg=str(key))
        moved += not np.allclose(value, start[key], rtol=0, atol=5e-4)
    assert moved > 0.8 * len(expected)  # the comparison is of weights that really changed


@pytest.fixture(scope="module")
def v5p8_devices(monkeypatch_module):
    """The 4 TPU v5p chips (megacore) of a v5p-8 topology, described by libtpu on this host."""
    pytest.importorskip("libtpu", reason="libtpu is not installed (pip install -r requirements-tpu.txt)")
    from jax.experimental import topologies

    monkeypatch_module.setenv("TPU_ACCELERATOR_TYPE", "v5p-8")  # no probing of the host for TPU metadata
    monkeypatch_module.setenv("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # other processes may hold libtpu's lockfile
    topology = topologies.get_topology_desc(platform="tpu", topology_name="v5p:2x2x1", chip_config_name="megacore",
                                            chips_per_host_bounds=(2, 2, 1), num_slices=1)
    return topology.devices


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_splash_train_step_aot_compiles_for_a_v5p8_topology_with_the_mosaic_kernel(v5p8_devices):
    assert len(v5p8_devices) == 4 and {d.platform for d in v5p8_devices} == {"tpu"}
    config = _config("splash", mesh=(2, 1, 2))
    mesh = create_mesh(config.mesh, v5p8_devices)
    labels = stage_labels(config)
    tx = make_optimizer(config.train, labels)
    step_fn = _step_fn(config, labels, tx)
    state, shardings = create_state(config, tx, labels, mesh, abstract=True)
    batch = encoded_batch(config.model, BATCH, np.random.default_rng(1))
    batch = abstract_arrays(batch, jax.tree.map(lambda _: batch_sharding(mesh), batch))
    with activation_rules(mesh, config.mesh.rules):
        compiled, _ = compile_step(step_fn, state, batch, state_shardings=shardings,
                                       batch_shardings=batch_sharding(mesh), log=lambda _: None)
    hlo = compiled.as_text()
    # The splash forward and its backward kernels, each a Mosaic custom call, not interpret-mode loops.
    assert hlo.count('custom_call_target="tpu_custom_call"') >= 3
