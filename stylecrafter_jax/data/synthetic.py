"""Synthetic record sources with the shapes and fields of the built datasets, for benchmarks and the toy."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

_BLOCK = 8  # synthetic pixels are random 8x8 blocks: image-like structure at little cost


def _pixels(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    coarse = rng.integers(0, 256, (-(-height // _BLOCK), -(-width // _BLOCK), 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, _BLOCK, 0), _BLOCK, 1)[:height, :width]


@dataclasses.dataclass(frozen=True)
class SyntheticImages:
    """`num_records` deterministic (h, w, 3) images of `size` with captions, like `style_images` records."""

    num_records: int
    size: tuple[int, int]
    seed: int = 0

    def __len__(self) -> int:
        return self.num_records

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, index])
        return {"image": _pixels(rng, self.size), "caption": f"a painting of synthetic image {index}".encode(),
                "path": f"synthetic/{index}".encode(), "label": b"", "original_size": np.array(self.size, np.int32)}


@dataclasses.dataclass(frozen=True)
class _LazyFrames:
    """The frames of one synthetic video, made on access (a clip reads only a few)."""

    seed: int
    index: int
    length: int
    size: tuple[int, int]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, frame: int) -> np.ndarray:
        return _pixels(np.random.default_rng([self.seed, self.index, frame]), self.size)


@dataclasses.dataclass(frozen=True)
class SyntheticVideos:
    """`num_records` deterministic videos of `num_frames` (h, w, 3) frames at `fps`, like `videos` records."""

    num_records: int
    num_frames: int
    size: tuple[int, int]
    fps: float
    seed: int = 0

    def __len__(self) -> int:
        return self.num_records

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"frames": _LazyFrames(self.seed, index, self.num_frames, self.size), "fps": np.float32(self.fps),
                "caption": f"synthetic video {index}".encode(), "path": f"synthetic/{index}".encode(),
                "original_size": np.array(self.size, np.int32)}
