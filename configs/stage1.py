"""Stage 1: train the style adapter on style images, everything else frozen.

Command: python -m stylecrafter_jax.train --config=configs/stage1.py   (arg "tiny" for a local run:
--config=configs/stage1.py:tiny). Trains 111,188,161 parameters at full size.
"""

from configs.base import base_config


def get_config(arg: str | None = None):
    """The stage-1 config; `arg` names the model size (default: full)."""
    return base_config(arg or "full", "stage1")
