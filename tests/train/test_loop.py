"""The training loop on the toy's tiny pixel model: resume after preemption equals an uninterrupted run,
NaN stops the run, bad configs are refused before compiling, the loss falls, an EMA run; the work directory's
record of the base weights: a resume on other base weights is refused naming both, and full-size training
without converted base weights is refused unless asked for."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from configs.stage1 import get_config as stage1_config
from configs.toy import get_config
from stylecrafter_jax.checkpoints.components import trained_tree_to_components
from stylecrafter_jax.checkpoints.pretrained import load_pretrained, read_manifest, write_manifest
from stylecrafter_jax.checkpoints.run_checkpoints import RunCheckpointer
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError
from stylecrafter_jax.sampling.weights import resolve_params
from stylecrafter_jax.toy.pipeline import phase_config
from stylecrafter_jax.train import loop
from stylecrafter_jax.train.__main__ import main
from stylecrafter_jax.train.loop import base_weights_id, check_base_weights, run
from stylecrafter_jax.train.metrics import TrainingStopped
from stylecrafter_jax.train.state import checkpoint_tree, merge, trainable
from tests.conftest import ONE_LEVEL_UNET

pytestmark = pytest.mark.heavy  # its tests run first (tests/conftest.py)

EMA_DECAY = 0.5
STEPS, EVERY = 20, 20  # orbax also saves the first step: checkpoints at 1 and 20, or 1 and 2 when preempted at 2


def _config(workdir, steps=STEPS):
    """The toy's base phase on a one-level U-Net, with an EMA: every run but the NaN one compiles the same two
    programs (init and step)."""
    config = phase_config(get_config("quick"), "base")
    with config.unlocked():
        config.workdir = str(workdir)
        config.data.toy.batch_size = 8
        config.model.unet.update(ONE_LEVEL_UNET)
        config.train.update(steps=steps, log_every=1, checkpoint_every=EVERY, async_checkpoint=False,
                            warmup_steps=0, schedule="constant", ema_decay=EMA_DECAY)
    return config


def _trained(result):
    return traverse_util.flatten_dict(jax.device_get(trainable(result.state.params, result.labels)))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    return workdir, run(_config(workdir), log=lambda _: None)


@pytest.fixture(scope="module")
def preempted(tmp_path_factory):
    """A run stopped by SIGTERM at step 2: its work directory, its result and the trees of its checkpoints at
    steps 1 and 2, read before a resume replaces them."""
    def preempt_at_step_2(line):
        if line.startswith("step=2 "):
            os.kill(os.getpid(), signal.SIGTERM)

    workdir = tmp_path_factory.mktemp("preempted")
    result = run(_config(workdir), log=preempt_at_step_2)
    checkpointer = RunCheckpointer(str(workdir / "checkpoints"), keep=2, every=EVERY)
    trees = {step: checkpointer.restore(step, checkpoint_tree(result.state, result.labels))[0]
             for step in checkpointer.manager.all_steps()}
    checkpointer.close()
    return workdir, result, trees


def test_preempted_and_resumed_run_equals_uninterrupted_run(preempted, uninterrupted):
    workdir, first, trees = preempted
    _, uninterrupted = uninterrupted
    assert first.preempted and first.step == 2 and sorted(trees) == [1, 2]
    resumed = run(_config(workdir), log=lambda _: None)
    assert resumed.step == STEPS
    expected, got = _trained(uninterrupted), _trained(resumed)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=str(key))
    expected_ema = traverse_util.flatten_dict(jax.device_get(uninterrupted.state.ema))
    got_ema = traverse_util.flatten_dict(jax.device_get(resumed.state.ema))
    assert got_ema.keys() == expected_ema.keys() == expected.keys()
    for key in expected_ema:
        np.testing.assert_array_equal(got_ema[key], expected_ema[key], err_msg=f"ema {key}")
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert all(k in rows[-1] for k in ("loss", "lr", "grad_norm", "steps_per_s", "examples_per_s"))
    # The same command once more: the finished run is noticed before any model is built.
    lines = []
    again = run(_config(workdir), log=lines.append)
    assert again.step == STEPS and again.state is None and not again.preempted
    assert any(f"holds the finished run (step {STEPS}" in line for line in lines), lines


def test_loss_falls(uninterrupted):
    workdir, _ = uninterrupted
    losses = [json.loads(line)["loss"] for line in open(workdir / "metrics.jsonl")]
    assert len(losses) == STEPS and np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


def test_non_finite_step_stops_the_run_at_the_next_checkpoint_step_before_saving(tmp_path, monkeypatch):
    real_batches = loop.step_batches

    def nan_at_step_2(*args, start, **kwargs):  # the other runs' step program: no compile of its own
        for step, (kind, batch) in enumerate(real_batches(*args, start=start, **kwargs), start=start + 1):
            yield kind, (jax.tree.map(lambda x: x * np.nan if jnp.issubdtype(x.dtype, jnp.floating) else x, batch)
                         if step == 2 else batch)

    monkeypatch.setattr(loop, "step_batches", nan_at_step_2)
    config = _config(tmp_path, 4)
    config.train.update(log_every=4, checkpoint_every=3)
    with pytest.raises(TrainingStopped, match="non-finite loss or gradient at step 2 .*stopped at step 3"):
        run(config, log=lambda _: None)
    assert RunCheckpointer(str(tmp_path / "checkpoints"), keep=2, every=3).latest_step() == 1  # orbax's first save


def test_ema_run_follows_the_recurrence_and_is_exported_and_sampled(preempted, uninterrupted):
    decay = EMA_DECAY
    _, _, checkpoints = preempted
    trees = [checkpoints[step] for step in sorted(checkpoints)]
    workdir, result = uninterrupted
    config, state, labels = _config(workdir), result.state, result.labels
    ema = traverse_util.flatten_dict(jax.device_get(trees[0]["ema"]))
    for tree in trees[1:]:  # EMA_t = d EMA_(t-1) + (1 - d) params_t, from the params of each step
        params = traverse_util.flatten_dict(jax.device_get(tree["trainable"]))
        got = traverse_util.flatten_dict(jax.device_get(tree["ema"]))
        assert sorted(got) == sorted(params)
        for key in got:
            np.testing.assert_allclose(got[key], decay * ema[key] + (1 - decay) * params[key], rtol=1e-6, atol=1e-7,
                                       err_msg=str(key))
        ema = got
    # The run's final EMA (step STEPS), which it exports, is not its weights.
    final_ema = traverse_util.flatten_dict(jax.device_get(state.ema))
    final = traverse_util.flatten_dict(jax.device_get(trainable(state.params, labels)))
    assert any(not np.allclose(final_ema[key], final[key]) for key in final_ema)

    export = str(workdir / "export")
    assert set(read_manifest(export)["variants"]) == {"ema"} and set(read_manifest(export)["variants"]["ema"]) == {"unet"}
    averaged = trained_tree_to_components(merge(jax.device_get(state.params), traverse_util.unflatten_dict(final_ema)))
    for variant, expected in (("ema", averaged["unet"]), ("", trained_tree_to_components(state.params)["unet"])):
        loaded = traverse_util.flatten_dict(load_pretrained(export, ["unet"], variant=variant)["unet"])
        for key, leaf in traverse_util.flatten_dict(jax.device_get(expected)).items():
            np.testing.assert_array_equal(loaded[key], leaf, err_msg=f"{variant}: {key}")
    config.weights_variant = "ema"
    sampled, line = resolve_params(config, export)
    assert "its ema variant" in line
    sampled_unet = traverse_util.flatten_dict(sampled["unet"])
    for key, leaf in traverse_util.flatten_dict(jax.device_get(averaged["unet"])).items():
        np.testing.assert_array_equal(np.asarray(sampled_unet[key]), leaf, err_msg=str(key))


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


# ===== The work directory's record of the base weights =====

def _stage1_config(workdir, pretrained="", size="tiny,synthetic"):
    config = stage1_config(size)
    with config.unlocked():
        config.workdir, config.pretrained = str(workdir), str(pretrained)
    return config


def _converted(directory, step):
    directory.mkdir()
    write_manifest(str(directory), {"source": "test", "step": step}, {})
    return directory


def test_resume_on_other_base_weights_is_refused_naming_both(tmp_path):
    first, second = _converted(tmp_path / "a", 1), _converted(tmp_path / "b", 2)
    check_base_weights(_stage1_config(tmp_path / "run", first), write=True)
    check_base_weights(_stage1_config(tmp_path / "run", first), write=True)  # the same base resumes
    with pytest.raises(ConfigError) as refused:
        check_base_weights(_stage1_config(tmp_path / "run", second), write=True)
    message = str(refused.value)
    assert base_weights_id(_stage1_config(tmp_path, first)) in message and base_weights_id(_stage1_config(tmp_path, second)) in message
    assert str(first) in message and str(second) in message
    with pytest.raises(ConfigError, match="not on random"):
        check_base_weights(_stage1_config(tmp_path / "run"), write=True)


def test_random_base_is_recorded_and_a_converted_one_is_refused_after_it(tmp_path):
    converted = _converted(tmp_path / "a", 1)
    check_base_weights(_stage1_config(tmp_path / "run"), write=True)
    assert base_weights_id(_stage1_config(tmp_path / "run")) == "random"
    with pytest.raises(ConfigError, match="trained on the base weights random, not on .*manifest sha256 [0-9a-f]{64}"):
        check_base_weights(_stage1_config(tmp_path / "run", converted), write=True)


def test_full_size_training_without_pretrained_is_refused_unless_allowed(tmp_path, capsys):
    config = _stage1_config(tmp_path / "full", size="full")
    with pytest.raises(ConfigError, match="--config.allow_random_base=True"):
        check_base_weights(config, write=False)
    config.allow_random_base = True
    check_base_weights(config, write=False)
    assert main(["train", "--config=configs/stage1.py", f"--config.workdir={tmp_path / 'cli'}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: full-size training needs --config.pretrained"), lines
