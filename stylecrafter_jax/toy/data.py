"""The toy's synthetic style dataset: shapes as content, palette + texture as style, generated on the fly.

Each example is a target image (one shape, described by a caption with no style words), a style
reference that is a *different* image of the same style (another shape, another place), and the
labels the toy's scorer uses. Everything is a pure function of (seed, example index), so the stream
is deterministic, shardable over processes and resumable from a count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from stylecrafter_jax.errors import ConfigError

SHAPES = ("circle", "square", "triangle", "cross")
CAPTIONS = ("a {}", "one {}", "a single {}", "a {} in the middle")


class Style(NamedTuple):
    """A palette (background, foreground RGB) and a texture drawn over the foreground."""

    name: str
    background: tuple[int, int, int]
    foreground: tuple[int, int, int]
    texture: str  # "stripes" | "dots" | "checker" | "diagonal"


STYLES = (
    Style("ember", (90, 10, 10), (250, 200, 40), "stripes"),
    Style("ocean", (10, 30, 110), (80, 230, 230), "dots"),
    Style("moss", (20, 70, 30), (200, 240, 120), "checker"),
    Style("ink", (235, 235, 225), (30, 30, 40), "diagonal"),
)


def shape_mask(shape: str, size: int, center: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean (size, size) mask of a shape of the given centre (y, x) and radius in pixels."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = y - center[0], x - center[1]
    if shape == "circle":
        return dy ** 2 + dx ** 2 <= radius ** 2
    if shape == "square":
        return (np.abs(dy) <= radius * 0.85) & (np.abs(dx) <= radius * 0.85)
    if shape == "triangle":
        return (dy <= radius * 0.8) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) * 0.6)
    if shape == "cross":
        arm = radius * 0.35
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= radius)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= radius))
    raise ConfigError(f"toy shape {shape!r}: expected one of {SHAPES}")


def texture_mask(texture: str, size: int, phase: int) -> np.ndarray:
    """Boolean (size, size) pattern: where the texture darkens the foreground."""
    y, x = np.mgrid[0:size, 0:size]
    period = max(3, size // 5)
    if texture == "stripes":
        return (y + phase) % period < period // 2
    if texture == "dots":
        return ((y + phase) % period < 2) & ((x + phase) % period < 2)
    if texture == "checker":
        return (((y + phase) // (period // 2 or 1)) + (x // (period // 2 or 1))) % 2 == 0
    if texture == "diagonal":
        return (x + y + phase) % period < 2
    raise ConfigError(f"toy texture {texture!r}: expected stripes, dots, checker or diagonal")


def render(style: Style, shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 (size, size, 3) image: textured shape of the style's palette on its background."""
    radius = size * rng.uniform(0.28, 0.38)
    margin = radius + 1
    center = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
    jitter = rng.integers(-15, 16, size=3)
    background = np.clip(np.array(style.background) + jitter, 0, 255)
    foreground = np.clip(np.array(style.foreground) + jitter, 0, 255)
    image = np.broadcast_to(background, (size, size, 3)).astype(np.float32).copy()
    mask = shape_mask(shape, size, center, radius)
    image[mask] = foreground
    shade = mask & texture_mask(style.texture, size, int(rng.integers(0, 8)))
    image[shade] = 0.55 * foreground + 0.45 * background
    return image.astype(np.uint8)


class ToyExample(NamedTuple):
    """One example: target image, style reference, caption, style and shape labels."""

    image: np.ndarray
    style: np.ndarray
    caption: str
    style_id: int
    shape_id: int


def toy_example(seed: int, index: int, image_size: int, style_size: int, num_styles: int = len(STYLES)
                ) -> ToyExample:
    """Example `index` of the stream of `seed`."""
    rng = np.random.default_rng([seed, index])
    style_id = int(rng.integers(num_styles))
    shape_id = int(rng.integers(len(SHAPES)))
    reference_shape = SHAPES[int(rng.integers(len(SHAPES)))]
    caption = CAPTIONS[int(rng.integers(len(CAPTIONS)))].format(SHAPES[shape_id])
    style = STYLES[style_id]
    return ToyExample(render(style, SHAPES[shape_id], image_size, rng), render(style, reference_shape, style_size, rng),
                      caption, style_id, shape_id)


class ToyStyleIterator:
    """Host-local batches of the toy stream: this process takes every `process_count`-th example; `batch_map`
    (e.g. data.tokens.CaptionTokens) runs on each batch."""

    def __init__(self, *, seed: int, batch_size: int, image_size: int, style_size: int, num_styles: int = len(STYLES),
                 process_index: int = 0, process_count: int = 1, batch_map: Callable[[dict], dict] | None = None):
        if batch_size % process_count:
            raise ConfigError(f"data.toy.batch_size {batch_size} must divide over {process_count} processes")
        if not 1 <= num_styles <= len(STYLES):
            raise ConfigError(f"data.toy.num_styles {num_styles}: expected 1..{len(STYLES)}")
        self.seed, self.image_size, self.style_size, self.num_styles = seed, image_size, style_size, num_styles
        self.global_batch, self.host_batch = batch_size, batch_size // process_count
        self.process_index, self.examples, self.batch_map = process_index, 0, batch_map

    def __iter__(self) -> "ToyStyleIterator":
        return self

    def __next__(self) -> dict[str, Any]:
        first = self.examples + self.process_index * self.host_batch
        examples = [toy_example(self.seed, first + i, self.image_size, self.style_size, self.num_styles)
                    for i in range(self.host_batch)]
        self.examples += self.global_batch
        batch = {"image": np.stack([e.image for e in examples]), "style": np.stack([e.style for e in examples]),
                 "caption": np.array([e.caption for e in examples], dtype=object),
                 "style_id": np.array([e.style_id for e in examples]),
                 "shape_id": np.array([e.shape_id for e in examples])}
        return batch if self.batch_map is None else self.batch_map(batch)

    def get_state(self) -> dict[str, int]:
        """The number of global examples consumed."""
        return {"examples": self.examples, "seed": self.seed}

    def set_state(self, state: dict[str, int]) -> None:
        """Continue after `state['examples']` examples."""
        if state["seed"] != self.seed:
            raise ConfigError(f"toy data state of seed {state['seed']} cannot resume a stream of seed {self.seed}")
        self.examples = int(state["examples"])
