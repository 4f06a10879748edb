"""tfds builder `style_images`: captioned style images stored at a bounded size (ArrayRecord)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from stylecrafter_jax.data.build.builder_base import Example, MediaBuilder
from stylecrafter_jax.data.build.media import bound_short_side, encode, read_image
from stylecrafter_jax.data.build.options import BuildOptions
from stylecrafter_jax.data.build.report import SkippedItem
from stylecrafter_jax.data.build.sources import SourceItem


def image_example(item: SourceItem, options: BuildOptions) -> Example:
    """The record of one image: decoded, checked against the minimum size, bounded, re-encoded."""
    pixels = read_image(item.path)
    height, width = pixels.shape[:2]
    small = min(height, width) < options.image_min_side
    if small and not options.upscale_small:
        raise SkippedItem("too small", item.path, f"{height}x{width} < {options.image_min_side}")
    stored = bound_short_side(pixels, options.image_max_side)
    return {
        "image": encode(stored, options.image_format, options.image_quality),
        "caption": item.caption,
        "path": item.key,
        "label": item.label,
        "original_size": np.array([height, width], np.int32),
    }, small


class StyleImages(MediaBuilder):
    """Style images with captions: `image` (short side <= image_max_side), `caption`, `path` (relative to the
    source), `label` (WikiArt-style folder, or ""), `original_size` (h, w before bounding)."""

    KIND = "images"
    EXAMPLE = image_example

    def features(self) -> tfds.features.FeaturesDict:
        """image, caption, path, label, original_size."""
        return tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format=self._options.image_format),
            "caption": tfds.features.Text(),
            "path": tfds.features.Text(),
            "label": tfds.features.Text(),
            "original_size": tfds.features.Tensor(shape=(2,), dtype=np.int32),
        })
