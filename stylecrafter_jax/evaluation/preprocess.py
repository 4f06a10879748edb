"""Metric-encoder preprocessing: open_clip's standard image transform, as the authors' CLIP-score example uses.

`center_crop` = torchvision `Resize(size, BICUBIC)` of the short side (PIL's antialiased bicubic, output
size as torchvision computes it) followed by `CenterCrop(size)` (top/left offset int(round(Δ / 2))),
on uint8 RGB. The encoders then scale to [0, 1] and normalise with their mean and std: OpenAI's CLIP
constants for CLIP, ImageNet's for DINO (inside the jitted encoder calls, see `evaluation/encoders.py`).
The same transform is used for DINO (224 px for ViT-B/16), a recorded choice: DINO's own evaluation
resizes to 256 before the 224 crop, and transformers' ViTImageProcessor squashes to 224 × 224.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from stylecrafter_jax.conditioning.preprocess import CLIP_MEAN, CLIP_STD, short_side_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATION = {"clip": (CLIP_MEAN, CLIP_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}


def center_crop(image: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8: bicubic short-side resize to `size`, then the centred square crop."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    pil = pil.convert("RGB")
    width, height = short_side_size(pil.size[0], pil.size[1], size)
    if (width, height) != pil.size:
        pil = pil.resize((width, height), Image.Resampling.BICUBIC)
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return np.asarray(pil.crop((left, top, left + size, top + size)))


def center_crops(images: np.ndarray, size: int) -> np.ndarray:
    """`center_crop` of each (h, w, 3) uint8 image of a (n, h, w, 3) stack: (n, size, size, 3)."""
    return np.stack([center_crop(image, size) for image in images]) if len(images) else \
        np.zeros((0, size, size, 3), np.uint8)
