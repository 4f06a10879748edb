"""The toy style stream: deterministic, resumable, host-disjoint; references share the target's style."""

import numpy as np
import pytest

from stylecrafter_jax.toy.data import SHAPES, STYLES, ToyStyleIterator, toy_example
from stylecrafter_jax.errors import ConfigError


def test_examples_are_a_function_of_seed_and_index():
    a, b = toy_example(0, 5, 16, 28), toy_example(0, 5, 16, 28)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.caption == b.caption and a.image.shape == (16, 16, 3) and a.style.shape == (28, 28, 3)
    assert not np.array_equal(toy_example(1, 5, 16, 28).image, a.image)


def test_captions_name_the_shape_and_no_style():
    for i in range(50):
        e = toy_example(0, i, 16, 28)
        assert SHAPES[e.shape_id] in e.caption
        assert not any(style.name in e.caption for style in STYLES)


def test_reference_has_the_target_palette():
    for i in range(20):
        e = toy_example(0, i, 16, 28)
        style = STYLES[e.style_id]
        corner = e.style[0, 0].astype(int)  # the reference's background
        assert np.abs(corner - np.array(style.background)).max() <= 15


def test_two_processes_read_disjoint_examples_that_cover_the_global_batch():
    whole = next(ToyStyleIterator(seed=0, batch_size=8, image_size=16, style_size=28))
    parts = [next(ToyStyleIterator(seed=0, batch_size=8, image_size=16, style_size=28, process_index=i,
                                   process_count=2)) for i in range(2)]
    np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), whole["image"])


def test_resume_continues_with_the_next_unseen_batch():
    it = ToyStyleIterator(seed=3, batch_size=4, image_size=16, style_size=28)
    next(it)
    state = it.get_state()
    expected = next(it)
    resumed = ToyStyleIterator(seed=3, batch_size=4, image_size=16, style_size=28)
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["image"], expected["image"])
    with pytest.raises(ConfigError, match="seed"):
        ToyStyleIterator(seed=4, batch_size=4, image_size=16, style_size=28).set_state(state)
