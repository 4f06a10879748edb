"""Stage 1: train the style adapter on style images, everything else frozen.

Command: python -m stylecrafter_jax.train --config=configs/stage1.py   (a local run on generated data:
--config=configs/stage1.py:tiny,synthetic). The run should bring the style loss down and give samples
that take the reference's style; `python -m stylecrafter_jax.summary --config=configs/stage1.py` counts
what it trains.
"""

import ml_collections

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import base_config
from stylecrafter_jax.models.sizes import SIZES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The stage-1 config; `arg` = "[size][,synthetic]" (default: the full model on built tfds data)."""
    arg = parse_arg(arg, size=SIZES, synthetic=False)
    config = base_config(arg.size, "stage1")  # the style adapter trains (stylecrafter_jax/train/stages.py)
    config.data.kind = "images"  # style images, each with a crop of itself as the style reference
    config.data.images.update(batch_size=256, size=(512, 512))  # global batch
    config.data.cached.batch_size = 256
    config.train.update(steps=40_000, learning_rate=5e-5, weight_decay=0.0)  # AdamW, constant rate

    if arg.size != "full":  # the small test models: small crops and batches
        config.data.images.update(batch_size=8, size=(64, 64))
        config.data.cached.batch_size = 8
    if arg.synthetic:  # generated data instead of built datasets
        config.data.images.source = config.data.videos.source = "synthetic"
    return config
