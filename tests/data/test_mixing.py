"""Stage-2 mixing: the image/video ratio over many steps, identical draws on every process, exact resume."""

import numpy as np
import pytest

from configs.stage2 import get_config as stage2_config
from stylecrafter_jax.data.iterators import make_iterator
from stylecrafter_jax.data.mixing import MixedIterator
from stylecrafter_jax.errors import ConfigError


class _Counter:
    """A stand-in iterator that yields its name and counts batches."""

    def __init__(self, name):
        self.name, self.count = name, 0

    def __next__(self):
        self.count += 1
        return {self.name: self.count}

    def get_state(self):
        return {"count": self.count}

    def set_state(self, state):
        self.count = state["count"]


@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_image_ratio_over_many_steps(ratio):
    mixed = MixedIterator(_Counter("image"), _Counter("video"), ratio, seed=0)
    kinds = ["image" in next(mixed) for _ in range(5000)]
    assert abs(np.mean(kinds) - ratio) < 0.02  # 5000 draws: standard error <= 0.007
    assert mixed.images.count + mixed.videos.count == 5000


def test_draws_depend_only_on_seed_and_step():
    a, b = (MixedIterator(_Counter("image"), _Counter("video"), 0.2, seed=3) for _ in range(2))
    assert [list(next(a)) for _ in range(100)] == [list(next(b)) for _ in range(100)]


def test_mixed_batches_and_exact_resume():
    data = stage2_config("tiny,synthetic").data
    data.image_ratio = 0.5
    mixed = make_iterator(data, process_index=0, process_count=1)
    for _ in range(3):
        next(mixed)
    state = mixed.get_state()
    expected = [next(mixed) for _ in range(5)]
    assert {"image", "video"} <= {key for batch in expected for key in batch}
    resumed = make_iterator(data, process_index=0, process_count=1)
    resumed.set_state(state)
    for want, got in zip(expected, (next(resumed) for _ in range(5))):
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(want[key], got[key])
    assert resumed.get_state() == mixed.get_state()


def test_ratio_must_be_a_probability():
    with pytest.raises(ConfigError, match="image_ratio=1.5"):
        MixedIterator(_Counter("image"), _Counter("video"), 1.5, seed=0)
