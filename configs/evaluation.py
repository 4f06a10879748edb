"""Evaluation config: metric encoders and their weights, DINO model, flow method, expected frames, batches.

Command (score the samples folder of a run of the official code or of `python -m stylecrafter_jax.sample`):
    python -m stylecrafter_jax.evaluate --config=configs/evaluation.py:video \
        --eval-json eval_data/eval_video_gen_single_ref_full.json --eval-root eval_data \
        --samples RUN_DIR --out runs/eval \
        --config.clip.checkpoint=CLIP-ViT-H-14-laion2B-s32B-b79K/ --config.dino.checkpoint=dino-vitb16/
It writes metrics.json (requested and scored counts, the means, every sample), per-style and per-prompt
tables (CSV and markdown) and one contact sheet per sample. With `--checkpoint DIR` (converted weights)
instead of `--samples`, it first generates every entry into `--out/generated` with the `model` and
`sampling` sections (those of configs/inference.py; `--config.sampling.steps=25` etc. override them).
`arg`: "video" (16 frames expected, default) or "image" (1 frame), optionally ",tiny" (tiny encoders,
and the tiny model of configs/inference.py:tiny with its 4-frame 64x64 videos, for tests).
The recorded metric choices are in `stylecrafter_jax.evaluation.defaults`.
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.evaluation.defaults import evaluation_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The evaluation config for `arg` = "video" | "image" [",tiny"]."""
    return evaluation_config(arg)
