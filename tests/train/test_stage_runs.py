"""Stage runs on a random base train (the CLI run of configs/stage2.py:tiny,synthetic moves the temporal
layers), both stage-2 step kinds compile before the first step, and bad packed image batches are refused."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from flax import traverse_util

from configs.stage2 import get_config
from stylecrafter_jax.checkpoints.pretrained import load_pretrained
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.train.loop import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow  # minutes on 2 cores: pytest -m slow tests
def test_stage2_cli_run_on_a_random_base_trains(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}  # and the session's XLA cache
    out = subprocess.run(
        [sys.executable, "-m", "stylecrafter_jax.train", "--config=configs/stage2.py:tiny,synthetic",
         f"--config.workdir={tmp_path}", "--config.train.steps=3", "--config.train.log_every=1",
         "--config.train.learning_rate=1e-3", "--config.train.async_checkpoint=False"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    compiled = [i for i, line in enumerate(lines) if line.startswith("compiled stage2 step on")]
    assert len(compiled) == 2 and max(compiled) < lines.index(next(l for l in lines if l.startswith("step=1 ")))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["grad_norm"] > 0 for r in rows), rows
    assert len({r["loss"] for r in rows}) == 3, rows
    unet = traverse_util.flatten_dict(load_pretrained(str(tmp_path / "export"), ["unet"])["unet"], sep="/")
    temporal_heads = {k: v for k, v in unet.items() if k.startswith("init_attn_0/") and k.endswith("proj_out/kernel")}
    assert temporal_heads and all(np.abs(v).max() > 0 for v in temporal_heads.values())  # zero-initialised, trained


@pytest.mark.parametrize("images, frames, match", [
    (dict(batch_size=16), 3, "data.images.batch_size 16 must be a multiple of data.videos.num_frames 3"),
    (dict(batch_size=8), 4, "data.images.batch_size 8 packs into 2 pseudo-videos of 4 frames: global batch size 2"),
    (dict(batch_size=32, size=(32, 32)), 4, r"data.images.size \(32, 32\) must equal data.videos.size \(64, 64\)"),
])
def test_bad_packed_image_batches_are_refused_before_compiling(tmp_path, images, frames, match):
    config = get_config("tiny,synthetic")
    with config.unlocked():
        config.workdir = str(tmp_path)
        config.data.videos.update(batch_size=8, num_frames=frames)
        config.data.images.update(images)
    with pytest.raises(ConfigError, match=match):
        run(config, log=lambda _: None)
