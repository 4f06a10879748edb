"""Style-image preprocessing as the reference does it, from an image file to CLIP vision-tower pixels.

1. `load_style_image`: PIL RGB → short side 512 (bilinear, PIL's antialiasing, as torchvision's
   `Resize(512)` on a PIL image) → centre crop 512 → [-1, 1], bit-exact with the reference. For
   aspect ratios beyond 8 the resized image would be huge, so only the kept region is resized (PIL's
   `box` argument: the same filter, but PIL stores the box in float32, so pixels may differ by one
   level of 255).
2. `clip_pixels`: the vision-tower input, as the reference's embedder computes it: kornia
   `resize(224, "bicubic", align_corners=True, antialias=True)` → (x + 1) / 2 → CLIP mean/std.
   kornia's antialiasing is a Gaussian blur (sigma = (factor - 1) / 2, kernel max(4·sigma, 3) rounded
   up to odd, reflect borders) before torch's bicubic interpolation (A = -0.75, align_corners=True,
   clamped borders). Both are linear and separable, so each axis is one (out, in) matrix here and the
   result equals kornia's up to float rounding (checked against diffusers' copy of kornia's code).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from stylecrafter_jax.errors import DataError

STYLE_SIZE = 512
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_BICUBIC_A = -0.75
_MAX_RESIZED_AREA = 8  # in crops: beyond it (aspect ratio > 8) only the kept region is resized
_UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def load_style_image(path: str | os.PathLike, size: int = STYLE_SIZE) -> np.ndarray:
    """The (size, size, 3) float32 style image in [-1, 1] of an image file; DataError if it cannot be read."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb(image)
    except _UNREADABLE as e:
        raise DataError(f"style image {os.fspath(path)!r} cannot be read: {type(e).__name__}: {e}") from e
    return image_to_unit_range(resize_center_crop(rgb, size))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → RGB, as the reference's `convert("RGB")` (alpha is dropped, not composited).

    16-bit integer images are first scaled to 8 bits (PIL's own conversion would clip them to white).
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        eight_bit = np.clip(np.asarray(image, np.float64) / 257.0, 0, 255).round().astype(np.uint8)
        image = Image.fromarray(eight_bit, mode="L")
    return image if image.mode == "RGB" else image.convert("RGB")


def resize_center_crop(image: Image.Image, size: int = STYLE_SIZE) -> Image.Image:
    """torchvision Resize(size) (short side, bilinear) then CenterCrop(size), in one PIL resize."""
    width, height = image.size
    new_width, new_height = short_side_size(width, height, size)
    top = int(round((new_height - size) / 2.0))
    left = int(round((new_width - size) / 2.0))
    if new_width * new_height <= _MAX_RESIZED_AREA * size * size:
        resized = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
        return resized.crop((left, top, left + size, top + size))
    sx, sy = width / new_width, height / new_height
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box)


def image_to_unit_range(image: Image.Image) -> np.ndarray:
    """uint8 RGB → float32 in [-1, 1] as ToTensor then x·2 − 1."""
    return (np.asarray(image, np.float32) / np.float32(255.0)) * np.float32(2.0) - np.float32(1.0)


def clip_resize(images: jax.Array, size: int = CLIP_SIZE) -> jax.Array:
    """kornia's antialiased bicubic (align_corners=True) resize of (..., h, w, c) images to (..., size, size, c)."""
    h, w = images.shape[-3], images.shape[-2]
    antialias = max(h / size, w / size) > 1
    rows = jnp.asarray(_resize_matrix(h, size, antialias))
    cols = jnp.asarray(_resize_matrix(w, size, antialias))
    highest = jax.lax.Precision.HIGHEST
    out = jnp.einsum("oh,...hwc->...owc", rows, images.astype(jnp.float32), precision=highest)
    return jnp.einsum("pw,...owc->...opc", cols, out, precision=highest)


def clip_normalize(images: jax.Array) -> jax.Array:
    """[-1, 1] images (..., 3) → (x + 1) / 2 normalised with the CLIP mean and std."""
    return ((images + 1.0) / 2.0 - jnp.asarray(CLIP_MEAN, jnp.float32)) / jnp.asarray(CLIP_STD, jnp.float32)


def clip_pixels(images: jax.Array, size: int = CLIP_SIZE) -> jax.Array:
    """[-1, 1] style images (..., h, w, 3) → the vision tower's input (..., size, size, 3)."""
    return clip_normalize(clip_resize(images, size))


def _resize_matrix(n_in: int, n_out: int, antialias: bool) -> np.ndarray:
    """(n_out, n_in) float32 matrix of one axis: bicubic interpolation after the optional Gaussian blur."""
    matrix = _bicubic_matrix(n_in, n_out)
    if antialias:
        matrix = matrix @ _gaussian_matrix(n_in, max((n_in / n_out - 1.0) / 2.0, 0.001))
    return matrix.astype(np.float32)


def _bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """torch's bicubic interpolation with align_corners=True (source index = i·(n_in−1)/(n_out−1)) as a matrix."""
    scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
    source = scale * np.arange(n_out, dtype=np.float32)
    base = np.floor(source)
    t = (source - base).astype(np.float64)
    a = _BICUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
    matrix = np.zeros((n_out, n_in))
    for tap in range(4):
        index = np.clip(base.astype(np.int64) - 1 + tap, 0, n_in - 1)
        np.add.at(matrix, (np.arange(n_out), index), weights[:, tap])
    return matrix


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """kornia's gaussian_blur2d along one axis (kernel max(4·sigma, 3) made odd, reflect padding) as a matrix."""
    size = int(max(4.0 * sigma, 3))
    size += 1 - size % 2
    offsets = np.arange(size, dtype=np.float32) - size // 2
    kernel = np.exp(-(offsets ** 2) / (np.float32(2) * np.float32(sigma) ** 2))
    kernel = kernel / kernel.sum()
    matrix = np.zeros((n, n))
    for tap, weight in enumerate(kernel):
        source = np.arange(n) - (size - 1) // 2 + tap
        source = np.abs(source)
        source = np.where(source >= n, 2 * (n - 1) - source, source)
        np.add.at(matrix, (np.arange(n), source), weight)
    return matrix


def short_side_size(width: int, height: int, size: int = STYLE_SIZE) -> tuple[int, int]:
    """(width, height) after torchvision's Resize(size) of a (width, height) image."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size
