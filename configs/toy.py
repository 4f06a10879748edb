"""The toy: the tiny StyleCrafter that runs end to end on a laptop CPU.

Sampling: python -m stylecrafter_jax.sample --config=configs/toy.py --prompt "a red circle" \
    --style IMAGE --out samples/toy
uses the model the toy training exported to `runs/toy/export` when there is one, else a randomly
initialised tiny model (it says which), and writes 4-frame 64x64 videos (`--mode image`: 64x64 images).
"""

from __future__ import annotations

import ml_collections

from configs.base import base_config
from configs.sampling import get_sampling_config
from stylecrafter_jax.sampling.settings import pixels_per_latent


def toy_sampling(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The sampling section at the tiny model's own size (frames, latent size × VAE factor), 20 steps."""
    sampling = get_sampling_config("video")
    factor = pixels_per_latent(model)
    sampling.height = model.latent_height * factor
    sampling.width = model.latent_width * factor
    sampling.frames = model.frames
    sampling.steps = 20
    return sampling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The toy config (no arg)."""
    if arg:
        raise ValueError(f"configs/toy.py: unexpected arg {arg!r}")
    config = base_config("tiny", "stage1")
    with config.unlocked():
        config.workdir = "runs/toy"
        config.sampling = toy_sampling(config.model)
    return config
