"""The toy's proof of learning: simple classifiers of style (palette, texture) and content (shape).

Both are nearest-centroid classifiers on hand-made statistics, fitted on training images of the toy
stream, so they judge generated images the way a person would read the toy: which palette and
texture, which shape.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from stylecrafter_jax.toy.data import SHAPES, toy_example


def _background(image: np.ndarray) -> np.ndarray:
    """The background colour: the median of the border pixels."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)
    return np.median(border, axis=0)


def style_features(image: np.ndarray) -> np.ndarray:
    """Background colour, foreground colour (the pixels farthest from it), contrast and texture energy."""
    x = image.astype(np.float32) / 255.0
    background = _background(image) / 255.0
    distance = np.linalg.norm(x - background, axis=-1)
    foreground = x[distance >= np.quantile(distance, 0.85)].mean(axis=0)
    gray = x.mean(axis=-1)
    texture = np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean()
    diagonal = np.abs(gray[1:, 1:] - gray[:-1, :-1]).mean() - np.abs(gray[1:, :-1] - gray[:-1, 1:]).mean()
    rows = np.abs(np.diff(gray, axis=0)).mean() - np.abs(np.diff(gray, axis=1)).mean()
    return np.concatenate([background, foreground, [distance.max(), texture, diagonal, rows]])


def content_features(image: np.ndarray) -> np.ndarray:
    """Shape statistics of the foreground mask (pixels unlike the background): bounding-box fill,
    top/bottom balance, corner emptiness and the mask resampled to 6x6 around its bounding box."""
    distance = _blur(np.linalg.norm(image.astype(np.float32) - _background(image), axis=-1))
    mask = distance > 0.5 * distance.max() if distance.max() > 0 else np.zeros(distance.shape, bool)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros(3 + 36, np.float32)
    box = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    h, w = box.shape
    fill = box.mean()
    top = box[: h // 2].sum() / max(box.sum(), 1.0)
    ch, cw = max(1, h // 3), max(1, w // 3)
    corners = (box[:ch, :cw].mean() + box[:ch, -cw:].mean() + box[-ch:, :cw].mean() + box[-ch:, -cw:].mean()) / 4
    grid = box[np.linspace(0, h - 1, 6).round().astype(int)][:, np.linspace(0, w - 1, 6).round().astype(int)]
    return np.concatenate([[fill, top, corners], grid.reshape(-1) * 0.3])


def _blur(x: np.ndarray) -> np.ndarray:
    """3x3 box blur with edge padding (robustness to noise and texture)."""
    padded = np.pad(x, 1, mode="edge")
    return sum(padded[i:i + x.shape[0], j:j + x.shape[1]] for i in range(3) for j in range(3)) / 9.0


class NearestCentroid(NamedTuple):
    """Class centroids of standardised features."""

    centroids: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, num_classes: int) -> "NearestCentroid":
        """Fit on (n, d) features with integer labels."""
        mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
        z = (features - mean) / std
        return cls(np.stack([z[labels == k].mean(axis=0) for k in range(num_classes)]), mean, std)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The nearest centroid's class of each row."""
        z = (features - self.mean) / self.std
        return np.argmin(((z[:, None] - self.centroids[None]) ** 2).sum(-1), axis=1)


class ToyScorer(NamedTuple):
    """Style and content classifiers fitted on the toy's training images."""

    style: NearestCentroid
    content: NearestCentroid

    @classmethod
    def fit(cls, seed: int, image_size: int, num_styles: int, num_examples: int = 800) -> "ToyScorer":
        """Fit both classifiers on `num_examples` images of the training stream of `seed`."""
        examples = [toy_example(seed, i, image_size, image_size, num_styles) for i in range(num_examples)]
        images = [e.image for e in examples]
        return cls(
            NearestCentroid.fit(np.stack([style_features(im) for im in images]),
                                np.array([e.style_id for e in examples]), num_styles),
            NearestCentroid.fit(np.stack([content_features(im) for im in images]),
                                np.array([e.shape_id for e in examples]), len(SHAPES)))

    def score(self, images: Sequence[np.ndarray], style_ids: Sequence[int], shape_ids: Sequence[int]
              ) -> dict[str, float]:
        """Fraction of images classified as the reference's style and as the caption's shape."""
        styles = self.style.predict(np.stack([style_features(im) for im in images]))
        shapes = self.content.predict(np.stack([content_features(im) for im in images]))
        return {"style_accuracy": float(np.mean(styles == np.asarray(style_ids))),
                "content_accuracy": float(np.mean(shapes == np.asarray(shape_ids)))}
