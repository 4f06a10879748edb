"""Build-time options of the tfds builders: stored sizes and encodings, size and length minimums, workers."""

from __future__ import annotations

import dataclasses

from stylecrafter_jax.errors import ConfigError

FORMATS = ("jpeg", "png")


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How source files become records. Sizes are short-side pixels; 0 means no limit."""

    image_max_side: int = 800  # images are stored downscaled to this short side (the style-reference scale)
    image_min_side: int = 512  # images with a smaller short side (smaller than the crop) are skipped ...
    upscale_small: bool = False  # ... unless this is set: then they are kept and upscaled when read
    image_format: str = "jpeg"  # "png" stores decoded pixels losslessly
    image_quality: int = 95  # JPEG quality of stored images
    video_max_side: int = 320  # frames are stored downscaled to this short side (the clip height)
    video_min_side: int = 320  # videos with a smaller short side are skipped unless upscale_small
    video_min_frames: int = 16  # videos with fewer decoded frames (one clip) are skipped
    video_max_frames: int = 0  # keep at most this many leading frames; 0 keeps all
    frame_format: str = "jpeg"
    frame_quality: int = 90
    workers: int = 1  # decoding processes; 1 decodes in the calling process

    def __post_init__(self):
        for name in ("image_format", "frame_format"):
            if getattr(self, name) not in FORMATS:
                raise ConfigError(f"BuildOptions.{name}={getattr(self, name)!r}; expected one of {FORMATS}")
        for name in ("image_quality", "frame_quality"):
            if not 1 <= getattr(self, name) <= 100:
                raise ConfigError(f"BuildOptions.{name}={getattr(self, name)}; expected 1..100")
        for name in ("image_max_side", "image_min_side", "video_max_side", "video_min_side", "video_max_frames"):
            if getattr(self, name) < 0:
                raise ConfigError(f"BuildOptions.{name}={getattr(self, name)}; expected >= 0")
        if self.video_min_frames < 2:
            raise ConfigError(f"BuildOptions.video_min_frames={self.video_min_frames}; expected >= 2")
        if self.workers < 1:
            raise ConfigError(f"BuildOptions.workers={self.workers}; expected >= 1")
        for kind in ("image", "video"):
            low, high = getattr(self, f"{kind}_min_side"), getattr(self, f"{kind}_max_side")
            if high and low > high:
                raise ConfigError(f"BuildOptions.{kind}_min_side={low} is above {kind}_max_side={high}")
        if self.video_max_frames and self.video_max_frames < self.video_min_frames:
            raise ConfigError(f"BuildOptions.video_max_frames={self.video_max_frames} is below "
                              f"video_min_frames={self.video_min_frames}")
