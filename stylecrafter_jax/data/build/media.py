"""Image files for a build: decode (validated, RGB, EXIF-rotated), bound the size, encode to bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from stylecrafter_jax.data.augment import resize_short_side
from stylecrafter_jax.data.build.report import SkippedItem

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG"}


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency composited over white and EXIF orientation applied."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def read_image(path: str) -> np.ndarray:
    """The pixels of an image file as (h, w, 3) uint8; raises SkippedItem("corrupt image") if undecodable."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(_to_rgb(image))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise SkippedItem("corrupt image", path, str(e)) from e


def bound_short_side(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """`pixels` downscaled so the short side is at most `max_side` (0: unchanged); never upscaled."""
    if max_side and min(pixels.shape[:2]) > max_side:
        return resize_short_side(pixels, max_side)
    return pixels


def encode(pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    """(h, w, 3) uint8 pixels as JPEG (with `quality`, 4:4:4 above 90) or PNG bytes."""
    buffer = io.BytesIO()
    kwargs = {"quality": quality, "subsampling": 0 if quality > 90 else 2} if fmt == "jpeg" else {}
    Image.fromarray(pixels).save(buffer, format=_PIL_FORMAT[fmt], **kwargs)
    return buffer.getvalue()
