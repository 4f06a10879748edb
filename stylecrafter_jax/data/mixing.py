"""Stage-2 batches: each step is an image batch with probability `image_ratio`, else a video batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from stylecrafter_jax.data.order import mix_draw
from stylecrafter_jax.data.pipeline import DataIterator
from stylecrafter_jax.errors import ConfigError


class MixedIterator:
    """Alternates two iterators by a seeded draw per step (the same on every process, so shapes agree).

    Image batches carry the key "image", video batches "video". The state holds the step and both
    iterators' states.
    """

    def __init__(self, images: DataIterator, videos: DataIterator, image_ratio: float, seed: int):
        if not 0.0 <= image_ratio <= 1.0:
            raise ConfigError(f"data.image_ratio={image_ratio}; expected a probability in [0, 1]")
        self.images, self.videos, self._ratio, self._seed, self._step = images, videos, image_ratio, seed, 0

    def __iter__(self) -> MixedIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        use_images = mix_draw(self._seed, self._step) < self._ratio
        self._step += 1
        return next(self.images if use_images else self.videos)

    def close(self) -> None:
        """Stops both iterators' decoding workers."""
        self.images.close()
        self.videos.close()

    def get_state(self) -> dict[str, Any]:
        """{"step", "images": ..., "videos": ...}: JSON-able."""
        return {"step": self._step, "images": self.images.get_state(), "videos": self.videos.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues from a `get_state()` dict."""
        self.images.set_state(state["images"])
        self.videos.set_state(state["videos"])
        self._step = int(state["step"])
