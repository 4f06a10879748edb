"""tfds builder `videos`: captioned videos decoded with PyAV into encoded frame sequences with their fps."""

from __future__ import annotations

import functools

import numpy as np
import tensorflow_datasets as tfds

from stylecrafter_jax.data.build.builder_base import Example, MediaBuilder
from stylecrafter_jax.data.build.media import encode
from stylecrafter_jax.data.build.options import BuildOptions
from stylecrafter_jax.data.build.report import SkippedItem
from stylecrafter_jax.data.build.sources import SourceItem
from stylecrafter_jax.data.build.video_decode import read_video


def video_example(item: SourceItem, options: BuildOptions) -> Example:
    """The record of one video: every frame (short side bounded) encoded on its own, plus the frame rate."""
    convert = functools.partial(encode, fmt=options.frame_format, quality=options.frame_quality)
    frames, fps, (height, width) = read_video(item.path, options.video_max_side, options.video_max_frames, convert)
    if len(frames) < options.video_min_frames:
        raise SkippedItem("too few frames", item.path, f"{len(frames)} < {options.video_min_frames}")
    small = min(height, width) < options.video_min_side
    if small and not options.upscale_small:
        raise SkippedItem("too small", item.path, f"{height}x{width} < {options.video_min_side}")
    return {
        "frames": np.array(frames, dtype=object),
        "fps": np.float32(fps),
        "caption": item.caption,
        "path": item.key,
        "original_size": np.array([height, width], np.int32),
    }, small


class Videos(MediaBuilder):
    """Captioned videos: `frames` (encoded images, short side <= video_max_side; decode only the ones a clip
    needs), `fps` (float32), `caption`, `path` (relative to the source), `original_size` (h, w)."""

    KIND = "videos"
    EXAMPLE = video_example

    def features(self) -> tfds.features.FeaturesDict:
        """frames, fps, caption, path, original_size."""
        return tfds.features.FeaturesDict({
            "frames": tfds.features.Tensor(shape=(None,), dtype=np.object_),
            "fps": tfds.features.Scalar(dtype=np.float32),
            "caption": tfds.features.Text(),
            "path": tfds.features.Text(),
            "original_size": tfds.features.Tensor(shape=(2,), dtype=np.int32),
        })
