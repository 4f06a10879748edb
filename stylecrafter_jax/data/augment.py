"""Resizes and crops on uint8 HWC arrays: centre-crop targets, random style-reference crops, clip sampling.

Resizing is PIL bilinear (antialiased), which is what torchvision's `Resize` does on PIL images in the
reference loaders; a short-side resize keeps torchvision's size rule (long side truncated to an int).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from stylecrafter_jax.errors import ConfigError, ShapeError


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) after resizing the short side to `short`, the long side as torchvision computes it."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def cover_size(height: int, width: int, target: tuple[int, int]) -> tuple[int, int]:
    """The smallest (h, w) of the same aspect that covers `target`; a short-side resize when that suffices."""
    th, tw = target
    if th / height >= tw / width:
        return th, max(tw, int(th * width / height))
    return max(th, int(tw * height / width)), tw


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` (h, w, 3) uint8 resized to `size` = (h, w); returned unchanged when already that size."""
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ShapeError(f"image: shape {image.shape} dtype {image.dtype}; expected (h, w, 3) uint8")
    if tuple(image.shape[:2]) == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def resize_short_side(image: np.ndarray, short: int) -> np.ndarray:
    """`image` with its short side resized to `short` (the reference's `Resize(short)`)."""
    return resize(image, short_side_size(image.shape[0], image.shape[1], short))


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The centred `size` = (h, w) window; the top-left offset is (excess // 2), as the reference computes it."""
    th, tw = size
    h, w = image.shape[:2]
    if h < th or w < tw:
        raise ShapeError(f"center_crop: image {h}x{w} is smaller than the crop {th}x{tw}")
    top, left = (h - th) // 2, (w - tw) // 2
    return image[top:top + th, left:left + tw]


def target_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The training target: resize to cover `size` (the short side to 512 for a 512x512 target), centre crop."""
    return center_crop(resize(image, cover_size(image.shape[0], image.shape[1], size)), size)


def style_crop(image: np.ndarray, resize_to: int, crop: int, output: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, tuple[int, int]]:
    """The style reference: short side to `resize_to`, a random `crop`x`crop` window, then `output`x`output`.

    `output` 0 keeps the crop size. Returns the reference and the window's top-left in the resized image.
    """
    if crop > resize_to:
        raise ConfigError(f"style crop {crop} is larger than the style resize {resize_to}")
    scaled = resize_short_side(image, resize_to)
    top = int(rng.integers(0, scaled.shape[0] - crop + 1))
    left = int(rng.integers(0, scaled.shape[1] - crop + 1))
    window = scaled[top:top + crop, left:left + crop]
    return (resize(window, (output, output)) if output else window), (top, left)


def sample_clip(available: int, num_frames: int, stride_range: tuple[int, int], rng: np.random.Generator
                ) -> tuple[int, int]:
    """(start, stride) of a `num_frames` clip, as the WebVid loader draws them.

    The stride is uniform in the inclusive `stride_range`; if the span stride*(n-1)+1 does not fit, the
    stride becomes available // num_frames (at least 1). The start is uniform over the positions that fit.
    Videos shorter than `num_frames` repeat their last frame (see `clip_indices`).
    """
    low, high = stride_range
    stride = int(rng.integers(low, high + 1))
    if stride * (num_frames - 1) + 1 > available:
        stride = max(1, available // num_frames)
    span = stride * (num_frames - 1) + 1
    start = int(rng.integers(0, max(available - span, 0) + 1))
    return start, stride


def clip_indices(start: int, stride: int, num_frames: int, available: int) -> np.ndarray:
    """Frame indices of a clip, clamped to the last frame."""
    return np.minimum(start + stride * np.arange(num_frames), available - 1)


def to_output(pixels: np.ndarray, dtype: str) -> np.ndarray:
    """uint8 pixels as `dtype`: "uint8" unchanged, or "float32" in [-1, 1] as x / 127.5 - 1."""
    if dtype == "uint8":
        return pixels
    if dtype == "float32":
        return pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    raise ConfigError(f"data.dtype={dtype!r}; expected 'uint8' or 'float32'")
