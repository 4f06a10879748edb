"""Generation with the full StyleCrafter model and the official settings (50 DDIM steps, guidance 15 / 7.5).

Command: python -m stylecrafter_jax.sample --config=configs/inference.py --checkpoint DIR \
    --prompt TEXT --style IMAGE --out DIR        (arg "image": --config=configs/inference.py:image)
where DIR holds the converted official weights (python -m stylecrafter_jax.convert import ...).
Writes 16x320x512 videos at 10 fps (images: 512x512), about 85 s per video on an A100-40G officially.
"""

from __future__ import annotations

import ml_collections

from configs.base import base_config
from configs.sampling import get_sampling_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full model with the sampling section of mode `arg` ("video", the default, or "image")."""
    config = base_config("full", "stage2")
    with config.unlocked():
        config.workdir = "runs/inference"
        config.sampling = get_sampling_config(arg or "video")
    return config
