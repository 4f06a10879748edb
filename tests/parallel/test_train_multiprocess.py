"""A real multi-process training run on CPU: two processes of 4 devices (jax.distributed over gloo) train 3
steps of the tiny config (slimmed, see COMMON) with `python -m stylecrafter_jax.train` and checkpoint; one
process of 8 devices on another mesh (data=2, fsdp=4 instead of fsdp=8) resumes and trains to step 5. The
losses and weights match a one-process run that reads the same global batches."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.parallel.test_distributed import free_port, wait_all

pytestmark = pytest.mark.slow  # minutes on 2 cores: pytest -m slow tests

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("train_worker.py")
TWO_PROCESS_STEPS, STEPS = 3, 5
# Stage "full" (the U-Net trains, so the weights move from the random start), the tiny model with one U-Net
# level and one-block towers: every kind of layer is there, and the two processes compile ~35% less.
COMMON = {"stage": "full", "train.log_every": 1, "train.learning_rate": 1e-3, "model.unet.channel_mult": (1,),
          "model.unet.attention_resolutions": (1,), "model.text_encoder.layers": 1, "model.image_encoder.layers": 1}


def _flags(overrides):
    return [f"--config.{key}={value}" for key, value in overrides.items()]


def _env(devices, cache):
    """`devices` CPU devices; LLVM optimisation off (compiles ~4x faster; every run here uses the same flags).

    The two processes run without the persistent compilation cache: JAX on CPU keys process 1's programs
    differently and only process 0 writes, so with a warm cache process 0 would race ahead and wait at the
    first collective past gloo's 30 s timeout. The one-process runs use the test session's cache.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0")
    for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COMPILATION_CACHE_DIR"):
        env.pop(key, None)
    if cache:
        env["JAX_COMPILATION_CACHE_DIR"] = os.environ["JAX_COMPILATION_CACHE_DIR"]  # the session's (conftest)
    else:
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return env


def _communicate(procs, timeout_s):
    """The stdout of each process, once all ended with status 0."""
    results = wait_all(procs, timeout_s)
    for rc, out, err in results:
        assert rc == 0, (out + err)[-4000:]
    return [out for _, out, _ in results]


def _metrics(workdir):
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiprocess")
    shared, reference, done = root / "two_processes", root / "reference", root / "two_processes_done"
    # One process of 8 devices: the reference run of the same global batches, started now to share the CPU
    # with the two processes; then, once they are done, the resume of their checkpoint on another mesh
    # (data=2, fsdp=4), both to step 5.
    one_process = {**COMMON, "mesh.data": 2, "mesh.fsdp": 4, "train.steps": STEPS}
    plan = [{"overrides": {**one_process, "workdir": str(reference)},
             "as_if_processes": [2] * TWO_PROCESS_STEPS + [1]},
            {"overrides": {**one_process, "workdir": str(shared)}, "after": str(done)}]
    worker = subprocess.Popen([sys.executable, str(WORKER), json.dumps(plan)], cwd=REPO, env=_env(8, cache=True),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Two processes: mesh fsdp=8 across both (the default mesh), 3 steps, checkpoint and export written by both.
    address = f"127.0.0.1:{free_port()}"
    two = [subprocess.Popen(
        [sys.executable, "-m", "stylecrafter_jax.train", "--config=configs/stage1.py:tiny,synthetic",
         *_flags({**COMMON, "workdir": shared, "train.steps": TWO_PROCESS_STEPS,
                  "mesh.distributed.coordinator_address": address, "mesh.distributed.num_processes": 2,
                  "mesh.distributed.process_id": pid, "mesh.distributed.initialization_timeout_s": 120})],
        cwd=REPO, env=_env(4, cache=False), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for pid in (0, 1)]
    try:
        logs = _communicate(two, timeout_s=400)
        two_process_metrics = _metrics(shared)
        two_process_export = json.loads((shared / "export" / "manifest.json").read_text())
    except BaseException:
        worker.kill()
        raise
    done.touch()
    [resume_log] = _communicate([worker], timeout_s=400)
    return dict(shared=shared, reference=reference, logs=logs, resume_log=resume_log,
                two_process_metrics=two_process_metrics, two_process_export=two_process_export)


def test_two_processes_train_as_one_runtime(runs):
    for pid, log in enumerate(runs["logs"]):
        assert f"mesh(data=1, fsdp=8, tensor=1) over 8 devices in 2 process(es); process {pid} of 2" in log
        assert "step=3 " in log  # every host logs its steps
    # Only the primary host writes metrics: one row per step.
    assert [row["step"] for row in runs["two_process_metrics"]] == [1, 2, 3]
    assert {"3", "5"} <= set(os.listdir(runs["shared"] / "checkpoints"))
    # Both hosts wrote the export (orbax saves are collective), host 0 its manifest; the resumed run replaced it.
    assert runs["two_process_export"]["step"] == TWO_PROCESS_STEPS
    assert set(runs["two_process_export"]["components"]) == {"unet", "adapter", "text_encoder", "image_encoder", "vae"}
    assert json.loads((runs["shared"] / "export" / "manifest.json").read_text())["step"] == STEPS


def test_resume_on_another_mesh_continues_from_the_checkpoint(runs):
    log = runs["resume_log"]
    assert "mesh(data=2, fsdp=4, tensor=1) over 8 devices in 1 process(es)" in log
    assert f"resumed from step {TWO_PROCESS_STEPS}" in log
    assert [row["step"] for row in _metrics(runs["shared"])] == [1, 2, 3, 4, 5]


def test_losses_match_one_process_on_the_same_global_batches(runs):
    got = _metrics(runs["shared"])
    expected = _metrics(runs["reference"])
    assert [row["step"] for row in expected] == [1, 2, 3, 4, 5]
    losses = np.array([row["loss"] for row in got])
    # float32 sums over 8 devices in another order agree to ~1e-7 relative; the same run reading the examples
    # in one-process order (other examples paired with each noise draw) differs by ~1e-4 from step 2 on.
    np.testing.assert_allclose(losses, [row["loss"] for row in expected], rtol=2e-6)
    assert np.ptp(losses) > 1e-2  # the weights moved: the steps are not all alike
    np.testing.assert_allclose([row["grad_norm"] for row in got], [row["grad_norm"] for row in expected], rtol=1e-5)


def test_trained_weights_match_one_process(runs):
    got = np.load(runs["shared"] / "trained.npz")
    expected = np.load(runs["reference"] / "trained.npz")
    assert sorted(got.files) == sorted(expected.files) and len(expected.files) > 100
    for key in expected.files:
        # Five Adam steps at lr 1e-3 (weights move ~5e-3): Adam divides by sqrt(v), so a near-zero gradient
        # summed in another order can move its weight ~2e-5 apart; 1e-4 is a fiftieth of the movement.
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-4, err_msg=key)
