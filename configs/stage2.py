"""Stage 2: train the 17 temporal transformers on a mix of videos and images, everything else frozen.

Command: python -m stylecrafter_jax.train --config=configs/stage2.py   (arg "tiny" for a local run:
--config=configs/stage2.py:tiny). Trains 278,575,232 parameters at full size.
"""

from configs.base import base_config


def get_config(arg: str | None = None):
    """The stage-2 config; `arg` names the model size (default: full)."""
    return base_config(arg or "full", "stage2")
