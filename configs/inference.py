"""Generation with StyleCrafter and the official settings (50 DDIM steps, guidance 15 / 7.5, eta 1, seed 123).

Command: python -m stylecrafter_jax.sample --config=configs/inference.py --checkpoint DIR \
    --prompt TEXT --style IMAGE --out OUT
where DIR holds converted weights (python -m stylecrafter_jax.convert import ... --out DIR). Writes
16x320x512 videos at 10 fps, officially about 85 s each on an A100-40G. Arg "[size][,image]":
`configs/inference.py:image` makes 512x512 images; `:tiny` is the tiny test model (4x64x64 videos),
which also runs without weights (random, for checking the pipeline).
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import inference_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The model of the named size with the sampling section of its mode (video unless "image")."""
    size, words = parse_arg(arg, allowed=("image",))
    return inference_config(size, "image" if "image" in words else "video")
