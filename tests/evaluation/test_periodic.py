"""Periodic evaluation inside training: scalars of a sample function on a small subset of an eval JSON."""

import json
import os

import numpy as np
import pytest

from configs.stage1 import get_config
from stylecrafter_jax.errors import ConfigError, ShapeError
from stylecrafter_jax.evaluation.periodic import PeriodicEvaluator, make_periodic_evaluator, pipeline_sample_fn
from stylecrafter_jax.train.loop import run
from tests.conftest import ONE_LEVEL_UNET
from tests.evaluation.tiny_eval import moving_video, tiny_config, write_eval_set, write_metric_weights

pytestmark = pytest.mark.heavy  # its tests run first (tests/conftest.py)

ENTRIES = [("A red kite over a beach.", "s/a.png"), ("A train in the mountains.", ["m/0.png", "m/1.png"]),
           ("A dog running.", "s/a.png")]


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    weights = write_metric_weights(str(tmp_path_factory.mktemp("weights")))
    root = str(tmp_path_factory.mktemp("eval"))
    return make_periodic_evaluator(tiny_config(weights), write_eval_set(root, ENTRIES), root, num_entries=2)


def test_returns_prefixed_means_of_the_subset(evaluator):
    seen = []

    def sample_fn(requests):
        seen.append([r.prompt for r in requests])
        return np.stack([moving_video(r.entry, 4, 32, 64) for r in requests])

    scalars = evaluator(sample_fn)
    assert seen == [[ENTRIES[0][0], ENTRIES[1][0]]]  # the first num_entries entries, once each
    assert set(scalars) == {"eval/clip_text", "eval/clip_style", "eval/dino_style", "eval/clip_temp",
                            "eval/warp_error", "eval/samples"}
    assert scalars["eval/samples"] == 2.0
    rows = evaluator.scorer.score([(r, 0, moving_video(r.entry, 4, 32, 64)) for r in evaluator.requests])
    for name in ("clip_text", "clip_style", "dino_style", "clip_temp", "warp_error"):
        np.testing.assert_allclose(scalars[f"eval/{name}"], np.mean([row[name] for row in rows]), rtol=1e-12)
    assert evaluator(sample_fn) == scalars  # the same videos give the same numbers


def test_rejects_wrong_videos_and_empty_subsets(evaluator):
    with pytest.raises(ShapeError, match=r"expected uint8 \(2, 4, h, w, 3\)"):
        evaluator(lambda requests: np.zeros((2, 3, 32, 64, 3), np.uint8))
    with pytest.raises(ShapeError, match="float32"):
        evaluator(lambda requests: np.zeros((2, 4, 32, 64, 3), np.float32))
    with pytest.raises(ConfigError, match="empty subset"):
        PeriodicEvaluator([], evaluator.scorer.encoders, evaluator.scorer.flow, 4, "")


def test_pipeline_sample_fn_batches_by_reference_count_and_keeps_order(evaluator):
    calls = []

    def fake_pipeline(prompts, style_images, indices, seed):
        calls.append((list(prompts), style_images.shape, list(indices), seed))
        return np.stack([moving_video(i, 4, 32, 64) for i in indices])

    requests = evaluator.requests + [evaluator.requests[0]._replace(entry=2)]  # 1 ref, 2 refs, 1 ref
    videos = pipeline_sample_fn(fake_pipeline, seed=5)(requests)
    assert [c[2] for c in calls] == [[0], [1], [2]] and {c[3] for c in calls} == {5}
    assert calls[1][1] == (1, 2, 512, 512, 3)  # references centre-cropped to 512 in [-1, 1], as sampling takes them
    np.testing.assert_array_equal(videos, np.stack([moving_video(i, 4, 32, 64) for i in range(3)]))


def test_periodic_samples_and_metrics(tmp_path):
    weights = write_metric_weights(str(tmp_path / "metric_weights"))
    eval_json = write_eval_set(str(tmp_path / "eval"), [("a red house", "styles/a.png"),
                                                        ("a dog", ["styles/a.png", "styles/b.jpg"])])
    config = get_config("tiny,synthetic")
    with config.unlocked():
        config.workdir = str(tmp_path / "run")
        config.model.unet.update(ONE_LEVEL_UNET)
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
