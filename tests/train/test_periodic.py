"""Periodic samples and metrics inside training: written to the work directory, logged with the scalars."""

import json
import os

from configs.stage1 import get_config
from stylecrafter_jax.train.loop import run
from tests.evaluation.tiny_eval import write_eval_set, write_metric_weights


def test_periodic_samples_and_metrics(tmp_path):
    weights = write_metric_weights(str(tmp_path / "metric_weights"))
    eval_json = write_eval_set(str(tmp_path / "eval"), [("a red house", "styles/a.png"),
                                                        ("a dog", ["styles/a.png", "styles/b.jpg"])])
    config = get_config("tiny,synthetic")
    with config.unlocked():
        config.workdir = str(tmp_path / "run")
        config.train.update(steps=2, log_every=1, sample_every=2, eval_every=2, async_checkpoint=False)
        config.sampling.steps = 2
        config.periodic.update(eval_json=eval_json, eval_root=str(tmp_path / "eval"), entries=2,
                               evaluation="video,tiny", clip_checkpoint=weights["clip"], clip_format="hf",
                               dino_checkpoint=weights["dino"])
    run(config, log=lambda _: None)
    samples = sorted(os.listdir(tmp_path / "run" / "samples" / "step_0000002" / "samples"))
    assert samples == ["0000_0.mp4", "0001_0.mp4"]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    evaluated = [r for r in rows if "eval/clip_style" in r]
    assert len(evaluated) == 1 and evaluated[0]["step"] == 2 and evaluated[0]["eval/samples"] == 2.0
    assert -1.0 <= evaluated[0]["eval/clip_text"] <= 1.0 and evaluated[0]["eval/warp_error"] >= 0.0
