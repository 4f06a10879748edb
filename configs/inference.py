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

from configs.args import parse_arg
from configs.base import base_config
from configs.sampling import get_sampling_config
from stylecrafter_jax.sampling.settings import pixels_per_latent


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The model of the named size with the sampling section of its mode (video unless "image")."""
    size, words = parse_arg(arg, allowed=("image",))
    mode = "image" if "image" in words else "video"
    config = base_config(size, "stage2")
    with config.unlocked():
        config.workdir = f"runs/inference-{size}"
        config.sampling = get_sampling_config(mode)
        if size != "full":  # the model's own latent size
            factor = pixels_per_latent(config.model)
            config.sampling.height = config.model.latent_height * factor
            config.sampling.width = config.model.latent_width * factor
            config.sampling.frames = 1 if mode == "image" else config.model.frames
    return config
