"""The example order: one global stream of epochs, each a seeded permutation, interleaved over processes.

Global example g belongs to epoch g // N at position g % N, and reads record permute(epoch)(g % N).
Process p of P reads global examples start + p, start + p + P, start + p + 2P, ... So all processes
together read each record exactly once per epoch, disjointly, and a position in the stream (the number
of global examples consumed) is the whole iterator state, valid for any process count.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from grain.experimental import index_shuffle

from stylecrafter_jax.errors import ConfigError

_SHUFFLE_ROUNDS = 4
_EPOCH_TAG, _EXAMPLE_TAG, _MIX_TAG = 0, 1, 2


def tagged_seed(seed: int, tag: int, index: int) -> int:
    """A 32-bit seed for (`seed`, purpose `tag`, `index`), independent across the three."""
    return int(np.random.SeedSequence([seed, tag, index]).generate_state(1)[0])


def example_rng(seed: int, global_index: int) -> np.random.Generator:
    """The random generator of one global example (crops, clip stride and start, style frame)."""
    return np.random.default_rng(np.random.SeedSequence([seed, _EXAMPLE_TAG, global_index]))


def mix_draw(seed: int, step: int) -> float:
    """A uniform [0, 1) draw for mixed-batch step `step`, the same on every process."""
    return float(np.random.default_rng(np.random.SeedSequence([seed, _MIX_TAG, step])).random())


@dataclasses.dataclass(frozen=True)
class ShardedOrder:
    """Maps a process's local example position to its global example index and record index."""

    num_records: int
    seed: int
    shuffle: bool
    process_index: int
    process_count: int
    start: int = 0

    def __post_init__(self):
        if self.num_records < 1:
            raise ConfigError(f"num_records={self.num_records}; expected >= 1")
        if not 0 <= self.process_index < self.process_count:
            raise ConfigError(f"process_index={self.process_index} with process_count={self.process_count}; "
                              f"expected 0 <= index < count")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed}; expected >= 0")

    def global_index(self, position: int) -> int:
        """The global example index of this process's `position`-th example (from `start`)."""
        return self.start + position * self.process_count + self.process_index

    def record(self, global_index: int) -> int:
        """The record index that global example `global_index` reads."""
        epoch, position = divmod(global_index, self.num_records)
        if not self.shuffle or self.num_records == 1:
            return position
        return index_shuffle(position, max_index=self.num_records - 1,
                             seed=tagged_seed(self.seed, _EPOCH_TAG, epoch), rounds=_SHUFFLE_ROUNDS)
