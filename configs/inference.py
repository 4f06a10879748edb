"""Generation with StyleCrafter and the official settings (50 DDIM steps, guidance 15 / 7.5, eta 1, seed 123).

Command: python -m stylecrafter_jax.sample --config=configs/inference.py --checkpoint DIR \
    --prompt TEXT --style IMAGE --out OUT
where DIR holds converted weights (python -m stylecrafter_jax.convert import ... --out DIR). Writes
16x320x512 videos at 10 fps. Arg "[size][,image]":
`configs/inference.py:image` makes 512x512 images; `:tiny` is the tiny test model (4x64x64 videos),
which also runs without weights (random, for checking the pipeline).
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import inference_config
from stylecrafter_jax.models.sizes import SIZES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The model of the named size with the sampling section of its mode (video unless "image")."""
    arg = parse_arg(arg, size=SIZES, image=False)
    config = inference_config(arg.size, "image" if arg.image else "video")
    config.sampling.update(sampler="ddim", steps=50, eta=1.0, text_scale=15.0, style_scale=7.5, seed=123)  # official
    return config
