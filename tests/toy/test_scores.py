"""The toy's classifiers: near-perfect on clean training-stream images, chance on shuffled labels."""

import numpy as np
import pytest

from stylecrafter_jax.toy.data import toy_example
from stylecrafter_jax.toy.scores import ToyScorer


@pytest.fixture(scope="module")
def scorer():
    return ToyScorer.fit(seed=0, image_size=16, num_styles=4, num_examples=400)


def test_held_out_images_are_classified(scorer):
    examples = [toy_example(7, i, 16, 16) for i in range(200)]
    scores = scorer.score([e.image for e in examples], [e.style_id for e in examples], [e.shape_id for e in examples])
    assert scores["style_accuracy"] >= 0.98
    assert scores["content_accuracy"] >= 0.9


def test_wrong_labels_score_near_chance(scorer):
    examples = [toy_example(7, i, 16, 16) for i in range(200)]
    rng = np.random.default_rng(0)
    scores = scorer.score([e.image for e in examples], rng.integers(0, 4, 200), rng.integers(0, 4, 200))
    assert scores["style_accuracy"] < 0.4 and scores["content_accuracy"] < 0.4
