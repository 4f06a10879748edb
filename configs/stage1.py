"""Stage 1: train the style adapter on style images, everything else frozen.

Command: python -m stylecrafter_jax.train --config=configs/stage1.py   (a local run on generated data:
--config=configs/stage1.py:tiny,synthetic). Trains 111,188,161 parameters at full size.
"""

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import base_config


def get_config(arg: str | None = None):
    """The stage-1 config; `arg` = "[size][,synthetic]" (default: the full model on built tfds data)."""
    size, flags = parse_arg(arg)
    return base_config(size, "stage1", "synthetic" if "synthetic" in flags else "tfds")
