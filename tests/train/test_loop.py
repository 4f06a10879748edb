"""The training loop on the toy's tiny pixel model: resume after preemption equals an uninterrupted run,
NaN stops the run, bad configs are refused before compiling, the loss falls."""

import json
import os
import signal

import jax
import numpy as np
import pytest
from flax import traverse_util

from configs.toy import get_config
from stylecrafter_jax.checkpoints.run_checkpoints import RunCheckpointer
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError
from stylecrafter_jax.train.loop import TrainingStopped, _check_finite, run
from stylecrafter_jax.train.state import trainable
from stylecrafter_jax.train.toy import phase_config


def _config(workdir, steps):
    config = phase_config(get_config("quick"), "base")
    with config.unlocked():
        config.workdir = str(workdir)
        config.data.toy.batch_size = 8
        config.train.update(steps=steps, log_every=1, checkpoint_every=2, async_checkpoint=False, warmup_steps=0,
                            schedule="constant")
    return config


def _trained(result):
    return traverse_util.flatten_dict(jax.device_get(trainable(result["state"].params, result["labels"])))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run(_config(tmp_path_factory.mktemp("straight"), 4), log=lambda _: None)


def test_preempted_and_resumed_run_equals_uninterrupted_run(tmp_path, uninterrupted):
    def preempt_at_step_2(line):
        if line.startswith("step=2 "):
            os.kill(os.getpid(), signal.SIGTERM)

    first = run(_config(tmp_path, 4), log=preempt_at_step_2)
    assert first["preempted"] and first["step"] == 2
    assert RunCheckpointer(str(tmp_path / "checkpoints"), keep=2, every=2).latest_step() == 2
    resumed = run(_config(tmp_path, 4), log=lambda _: None)
    assert resumed["step"] == 4
    expected, got = _trained(uninterrupted), _trained(resumed)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=str(key))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(k in rows[-1] for k in ("loss", "lr", "grad_norm", "steps_per_s", "examples_per_s"))
    # The same command once more: the finished run is noticed before any model is built.
    lines = []
    again = run(_config(tmp_path, 4), log=lines.append)
    assert again["step"] == 4 and again["state"] is None and not again["preempted"]
    assert any("holds the finished run (step 4" in line for line in lines), lines


def test_loss_falls(tmp_path):
    run(_config(tmp_path, 30), log=lambda _: None)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


def test_non_finite_step_stops_the_run_naming_the_step():
    # The step itself keeps the state on a non-finite loss (tests/train/test_step.py); the loop then stops.
    _check_finite((7, {"finite": np.bool_(True), "loss": 1.0, "grad_norm": 1.0}))
    with pytest.raises(TrainingStopped, match="non-finite loss or gradient at step 7"):
        _check_finite((7, {"finite": np.bool_(False), "loss": np.nan, "grad_norm": np.inf}))


def test_workdir_of_another_model_is_refused(tmp_path, uninterrupted):
    config = _config(tmp_path, 1)
    config.model.unet.model_channels = 64
    os.makedirs(tmp_path, exist_ok=True)
    with open(tmp_path / "config.json", "w") as f:
        json.dump(json.loads(_config(tmp_path, 1).to_json_best_effort()), f)
    with pytest.raises(ConfigError, match="model.unet.model_channels: recorded 32, now 64"):
        run(config, log=lambda _: None)


def test_batch_that_does_not_divide_over_devices_is_refused(tmp_path):
    config = _config(tmp_path, 1)
    config.data.toy.batch_size = 6
    with pytest.raises(ConfigError, match="does not divide over data x fsdp"):
        run(config, log=lambda _: None)


def test_checkpoint_of_another_shape_is_refused(tmp_path):
    checkpointer = RunCheckpointer(str(tmp_path), keep=1, every=1, asynchronous=False)
    checkpointer.save(1, {"w": np.zeros((2, 3), np.float32)}, {"examples": 0}, force=True)
    with pytest.raises(CheckpointMismatchError, match="does not match"):
        checkpointer.restore(1, {"w": jax.ShapeDtypeStruct((3, 3), np.float32)})
    checkpointer.close()
