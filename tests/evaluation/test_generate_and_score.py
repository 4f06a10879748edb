"""`evaluate --checkpoint`: generate an eval JSON's entries with the toy model's converted weights, then score them."""

import json
import os

import jax
import numpy as np

from stylecrafter_jax import evaluate
from stylecrafter_jax.checkpoints.pretrained import save_pretrained
from stylecrafter_jax.sampling.weights import abstract_params, to_components
from tests.evaluation.tiny_eval import tiny_config, write_eval_set, write_metric_weights


def random_like(abstract, seed: int = 0):
    """Random float32 leaves: kernels ~ N(0, 1/fan_in), norm scales 1 + N(0, 0.1²), others N(0, 0.1²)."""
    rng = np.random.default_rng(seed)

    def one(path, leaf):
        noise = rng.standard_normal(leaf.shape).astype(np.float32)
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            return noise / np.float32(np.sqrt(max(1, int(np.prod(leaf.shape[:-1])))))
        return np.float32("scale" in name) + np.float32(0.1) * noise

    return jax.tree_util.tree_map_with_path(one, abstract)


def test_generates_with_official_names_then_scores(tmp_path, capsys):
    weights = write_metric_weights(str(tmp_path / "metric"))
    config = tiny_config(weights)
    checkpoint = str(tmp_path / "converted")
    save_pretrained(checkpoint, to_components(random_like(abstract_params(config.model))), {"source": "test"})
    root = str(tmp_path / "eval_data")
    json_path = write_eval_set(root, [("A fox in the snow.", "s/a.png"), ("A boat.", ["m/0.png", "m/1.png"]),
                                      ("A third entry beyond the limit.", "s/a.png")])
    out = str(tmp_path / "out")
    argv = ["evaluate", "--config=configs/evaluation.py:video,tiny", f"--config.clip.checkpoint={weights['clip']}",
            "--config.clip.format=hf", f"--config.dino.checkpoint={weights['dino']}", "--config.sampling.steps=2",
            "--eval-json", json_path, "--eval-root", root, "--out", out, "--checkpoint", checkpoint, "--limit", "2"]
    assert evaluate.main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "weights: checkpoint" in printed and "generated 2 samples" in printed
    generated = os.path.join(out, "generated")
    assert sorted(os.listdir(os.path.join(generated, "samples"))) == ["0000_0.mp4", "0001_0.mp4"]
    assert sorted(os.listdir(os.path.join(generated, "style"))) == ["0000.png", "0001_00.png", "0001_01.png"]
    with open(os.path.join(out, "metrics.json")) as f:
        doc = json.load(f)
    assert (doc["requested_samples"], doc["scored_samples"], doc["complete"]) == (2, 2, True)
    assert doc["settings"]["samples"] == os.path.abspath(generated)
    assert doc["settings"]["generation"]["sampling"]["steps"] == 2
    assert all(row["frames"] == 4 and np.isfinite(row["warp_error"]) for row in doc["samples"])
    assert evaluate.main(argv) == 2  # the samples exist: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
