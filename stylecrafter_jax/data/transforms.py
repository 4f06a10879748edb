"""Per-example read-time transforms: record -> training example (target, style reference, clean caption)."""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any

import ml_collections
import numpy as np
from PIL import Image

from stylecrafter_jax.data.augment import clip_indices, sample_clip, style_crop, target_crop, to_output
from stylecrafter_jax.data.captions import clean_caption
from stylecrafter_jax.errors import ConfigError

STYLE_FRAMES = ("random", "first", "middle")


def decode_frame(data: bytes) -> np.ndarray:
    """A stored frame's encoded image bytes as (h, w, 3) uint8."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@dataclasses.dataclass(frozen=True)
class CaptionCleaner:
    """Decodes a stored caption and applies the configured removal rules."""

    rules: tuple[str, ...]
    tidy: bool = True

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> CaptionCleaner:
        """From `data.captions` (rules, tidy)."""
        return cls(tuple(config.rules), bool(config.tidy))

    def __call__(self, caption: bytes | str) -> str:
        text = caption.decode("utf-8") if isinstance(caption, bytes) else caption
        return clean_caption(text, self.rules, self.tidy)


@dataclasses.dataclass(frozen=True)
class StyleReference:
    """Where the style reference comes from: short side to `resize`, random `crop` square, `output` square."""

    resize: int
    crop: int
    output: int

    def __post_init__(self):
        if not 0 < self.crop <= self.resize:
            raise ConfigError(f"style crop {self.crop} with style resize {self.resize}; expected 0 < crop <= resize")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return style_crop(image, self.resize, self.crop, self.output, rng)[0]


@dataclasses.dataclass(frozen=True)
class ImageTransform:
    """A `style_images` record -> {image: centre-cropped target, style: random crop at the larger scale, caption}."""

    size: tuple[int, int]
    style: StyleReference
    captions: CaptionCleaner
    dtype: str = "uint8"

    @classmethod
    def from_config(cls, data: ml_collections.ConfigDict) -> ImageTransform:
        """From `data.images` (size, style_resize, style_crop, style_output), `data.captions`, `data.dtype`."""
        images = data.images
        return cls(tuple(images.size), StyleReference(images.style_resize, images.style_crop, images.style_output),
                   CaptionCleaner.from_config(data.captions), data.dtype)

    def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        image = record["image"]
        return {"image": to_output(target_crop(image, self.size), self.dtype),
                "style": to_output(self.style(image, rng), self.dtype),
                "caption": self.captions(record["caption"])}


@dataclasses.dataclass(frozen=True)
class VideoTransform:
    """A `videos` record -> {video: (t, h, w, 3) clip, style: crop of one of its frames, caption, fps, frame_stride}.

    The clip takes `num_frames` frames at a stride drawn from `stride_range` (WebVid loader rules), each
    resized to cover `size` and centre-cropped. `fps` is the stored fps // stride (capped at `fps_max` if
    > 0). The style reference is a crop of the clip frame named by `style_frame` ("random", "first",
    "middle"), taken from the stored (uncropped) frame.
    """

    num_frames: int
    stride_range: tuple[int, int]
    size: tuple[int, int]
    style_frame: str
    style: StyleReference
    captions: CaptionCleaner
    fps_max: float = 0.0
    dtype: str = "uint8"

    def __post_init__(self):
        low, high = self.stride_range
        if not 1 <= low <= high:
            raise ConfigError(f"data.videos.stride_range={self.stride_range}; expected 1 <= min <= max")
        if self.style_frame not in STYLE_FRAMES:
            raise ConfigError(f"data.videos.style_frame={self.style_frame!r}; expected one of {STYLE_FRAMES}")
        if self.num_frames < 1:
            raise ConfigError(f"data.videos.num_frames={self.num_frames}; expected >= 1")

    @classmethod
    def from_config(cls, data: ml_collections.ConfigDict) -> VideoTransform:
        """From `data.videos`, `data.captions` and `data.dtype`."""
        videos = data.videos
        return cls(videos.num_frames, tuple(videos.stride_range), tuple(videos.size), videos.style_frame,
                   StyleReference(videos.style_resize, videos.style_crop, videos.style_output),
                   CaptionCleaner.from_config(data.captions), videos.fps_max, data.dtype)

    def _style_position(self, rng: np.random.Generator) -> int:
        if self.style_frame == "random":
            return int(rng.integers(0, self.num_frames))
        return 0 if self.style_frame == "first" else self.num_frames // 2

    def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        frames = record["frames"]
        start, stride = sample_clip(len(frames), self.num_frames, self.stride_range, rng)
        decoded = [frames[i] if isinstance(frames[i], np.ndarray) else decode_frame(frames[i])
                   for i in clip_indices(start, stride, self.num_frames, len(frames))]
        fps = math.floor(float(record["fps"]) / stride)
        return {"video": to_output(np.stack([target_crop(f, self.size) for f in decoded]), self.dtype),
                "style": to_output(self.style(decoded[self._style_position(rng)], rng), self.dtype),
                "caption": self.captions(record["caption"]),
                "fps": np.float32(min(fps, self.fps_max) if self.fps_max > 0 else fps),
                "frame_stride": np.int32(stride)}
