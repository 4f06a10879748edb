"""Stage 2: train the 17 temporal transformers on a mix of videos and images, everything else frozen.

Command: python -m stylecrafter_jax.train --config=configs/stage2.py   (a local run on generated data:
--config=configs/stage2.py:tiny,synthetic). The run should bring the loss down on both kinds of batch
and give videos whose frames move smoothly; `python -m stylecrafter_jax.summary --config=configs/stage2.py`
counts what it trains.
"""

import ml_collections

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import base_config
from stylecrafter_jax.models.sizes import SIZES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The stage-2 config; `arg` = "[size][,synthetic]" (default: the full model on built tfds data)."""
    arg = parse_arg(arg, size=SIZES, synthetic=False)
    config = base_config(arg.size, "stage2")  # the temporal transformers train (stylecrafter_jax/train/stages.py)
    config.data.kind = "mixed"  # videos, and images at the frame size in a share of the steps
    config.data.image_ratio = 0.2
    config.data.images.batch_size = 128  # global batches
    config.data.videos.batch_size = 8
    config.train.update(steps=20_000, learning_rate=1e-5, weight_decay=0.01)  # AdamW, constant rate

    if arg.size != "full":  # the small test models: small crops and batches
        config.data.images.batch_size = config.data.cached.batch_size = 8
        config.data.videos.batch_size = 2
    if arg.synthetic:  # generated data instead of built datasets
        config.data.images.source = config.data.videos.source = "synthetic"
    return config
