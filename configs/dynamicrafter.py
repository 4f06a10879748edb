"""DynamiCrafter image animation: `:256` (256x256), `:512` (320x512), `:1024` (576x1024) and `:512_interp`
(interpolation and looping at 320x512), 16 frames each.

Command: python -m stylecrafter_jax.summary --config=configs/dynamicrafter.py:512 (the U-Net and projector
counts, equal to the released checkpoint's); add `,tiny` for the tiny test model of the variant.
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import image_to_video_config
from stylecrafter_jax.models.variants import SIZES

RESOLUTIONS = ("512", "256", "1024", "512_interp")  # the first is the default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The DynamiCrafter config; `arg` = "[resolution][,size]", resolution one of RESOLUTIONS (default 512)."""
    arg = parse_arg(arg, resolution=RESOLUTIONS, size=SIZES)
    return image_to_video_config(f"dynamicrafter_{arg.resolution}", arg.size)
