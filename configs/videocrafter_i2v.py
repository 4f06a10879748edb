"""VideoCrafter1 image-to-video (I2V-512): 16 frames at 320x512 from a prompt and an image.

Command: python -m stylecrafter_jax.summary --config=configs/videocrafter_i2v.py (the U-Net and projector
counts, equal to the released checkpoint's); `:tiny` is the tiny test model.
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import image_to_video_config
from stylecrafter_jax.models.variants import SIZES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The VideoCrafter1 I2V config; `arg` = "[size]" (default: the full model)."""
    arg = parse_arg(arg, size=SIZES)
    return image_to_video_config("videocrafter_i2v", arg.size)
