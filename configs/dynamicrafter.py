"""DynamiCrafter image animation: `:256` (256x256), `:512` (320x512), `:1024` (576x1024) and `:512_interp`
(interpolation and looping at 320x512), 16 frames each.

Command: python -m stylecrafter_jax.summary --config=configs/dynamicrafter.py:512 (U-Net 1,438,854,980
parameters, 1,438,854,996 for 256; projector 48,787,456); add `,tiny` for the tiny test model of the variant.
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import image_to_video_config
from stylecrafter_jax.errors import ConfigError

RESOLUTIONS = ("256", "512", "1024", "512_interp")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The DynamiCrafter config; `arg` = "resolution[,size]", resolution one of RESOLUTIONS (default 512)."""
    size, words = parse_arg(arg, allowed=RESOLUTIONS)
    if len(words) > 1:
        raise ConfigError(f"config arg {arg!r}: expected one resolution of {RESOLUTIONS}, got {sorted(words)}")
    resolution = next(iter(words), "512")
    return image_to_video_config(f"dynamicrafter_{resolution}", size)
