"""Stage 2: train the 17 temporal transformers on a mix of videos and images, everything else frozen.

Command: python -m stylecrafter_jax.train --config=configs/stage2.py   (a local run on generated data:
--config=configs/stage2.py:tiny,synthetic). Trains 278,575,232 parameters at full size.
"""

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import base_config


def get_config(arg: str | None = None):
    """The stage-2 config; `arg` = "[size][,synthetic]" (default: the full model on built tfds data)."""
    size, flags = parse_arg(arg)
    return base_config(size, "stage2", "synthetic" if "synthetic" in flags else "tfds")
