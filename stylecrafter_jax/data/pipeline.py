"""Host-local batch iterators over a record source: sharded seeded order, transforms, grain workers, state.

A batch is a dict of numpy arrays with a fixed shape:
  images: image (b, h, w, 3), style (b, s, s, 3), caption (b,) object (str), index (b,) int64
  videos: video (b, t, h, w, 3), style (b, s, s, 3), caption, fps (b,) float32, frame_stride (b,) int32, index
  cached: one array per stored encoder output (b, ...), caption, source_index (b,) int64, index
Pixels are uint8 in [0, 255] (data.dtype "uint8") or float32 in [-1, 1] ("float32"). `index` is the record
index in the source. `b` is the host batch: the configured global batch size / process count.
A `batch_map` (e.g. data.tokens.CaptionTokens, which adds tokens (b, 77) int32) runs on each batch in
grain's read threads or workers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grain
import ml_collections
import numpy as np
from absl import flags

from stylecrafter_jax.data.order import ShardedOrder, example_rng
from stylecrafter_jax.errors import ConfigError, DataError

_STREAM_LENGTH = 2**62  # positions per process: the stream repeats epochs for as long as anyone reads
_MAX_REPLACEMENTS = 8
_UNREADABLE = (OSError, EOFError, SyntaxError, DataError)  # what decoding a damaged record raises


def collate(examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Stacks examples into a batch; strings become an object array."""
    batch = {}
    for key in examples[0]:
        values = [e[key] for e in examples]
        batch[key] = np.array(values, dtype=object) if isinstance(values[0], str) else np.stack(values)
    return batch


@dataclasses.dataclass(frozen=True)
class ExampleReader:
    """Local position -> transformed example of the record the order assigns to it (picklable for workers).

    A record that cannot be read (storage damage; the builder validated every file) is logged and
    replaced by the next record, deterministically, so one bad record never stops a run.
    """

    source: Sequence[dict[str, Any]]
    order: ShardedOrder
    transform: Callable[[dict[str, Any], np.random.Generator], dict[str, Any]]

    def __call__(self, position: int) -> dict[str, Any]:
        global_index = self.order.global_index(position)
        first = self.order.record(global_index)
        for attempt in range(_MAX_REPLACEMENTS + 1):
            record_index = (first + attempt) % self.order.num_records
            try:
                example = self.transform(self.source[record_index], example_rng(self.order.seed, global_index))
            except _UNREADABLE as e:
                logging.warning("data: record %d cannot be read (%s: %s); using the next record", record_index,
                                type(e).__name__, e)
                continue
            example["index"] = np.int64(record_index)
            return example
        raise DataError(f"records {first} to {record_index} (of {self.order.num_records}) cannot be read")


@dataclasses.dataclass(frozen=True)
class LoaderOptions:
    """grain settings: decoding worker processes (0: in this process), threads and buffers."""

    worker_count: int = 0
    worker_buffer_size: int = 2
    read_threads: int = 8
    prefetch: int = 16

    @classmethod
    def from_config(cls, data: ml_collections.ConfigDict) -> LoaderOptions:
        """From data.worker_count, worker_buffer_size, read_threads, prefetch."""
        return cls(data.worker_count, data.worker_buffer_size, data.read_threads, data.prefetch)


def resolve_processes(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """(index, count), defaulting to jax.process_index() / jax.process_count()."""
    if process_index is None or process_count is None:
        import jax  # only when the caller does not say; keeps the data package importable without jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    return process_index, process_count


def host_batch_size(global_batch: int, process_count: int, what: str) -> int:
    """`global_batch` / `process_count`, which must divide evenly."""
    if global_batch < 1 or global_batch % process_count:
        raise ConfigError(f"{what}={global_batch}; expected a positive multiple of process_count={process_count}")
    return global_batch // process_count


class DataIterator:
    """Yields host batches forever; `get_state()` / `set_state()` save and restore the position exactly.

    The state is {"examples": global examples consumed by all processes, "seed", "num_records"}, the same
    on every process; restoring it continues with the next unseen example (also with another process
    count, as long as the global batch still divides).
    """

    def __init__(self, source: Sequence[dict[str, Any]], transform: Callable, *, global_batch: int, seed: int,
                 shuffle: bool = True, process_index: int | None = None, process_count: int | None = None,
                 loader: LoaderOptions = LoaderOptions(), batch_map: Callable[[dict], dict] | None = None):
        self._index, self._count = resolve_processes(process_index, process_count)
        self._batch = host_batch_size(global_batch, self._count, "global batch size")
        self._source, self._transform, self._seed, self._shuffle, self._loader = source, transform, seed, shuffle, loader
        self._batch_map = batch_map
        self._num_records = len(source)
        self._start = 0
        self._batches = 0
        self._iterator: Iterator | None = None

    @property
    def host_batch_size(self) -> int:
        """Examples per batch on this process."""
        return self._batch

    def _dataset(self) -> grain.IterDataset:
        order = ShardedOrder(self._num_records, self._seed, self._shuffle, self._index, self._count, self._start)
        dataset = (grain.MapDataset.range(0, _STREAM_LENGTH)
                   .map(ExampleReader(self._source, order, self._transform))
                   .batch(self._batch, drop_remainder=True, batch_fn=collate))
        if self._batch_map is not None:
            dataset = dataset.map(self._batch_map)
        dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=self._loader.read_threads,
                                                            prefetch_buffer_size=self._loader.prefetch))
        if self._loader.worker_count > 0:
            if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; a plain script never parsed them
                flags.FLAGS.mark_as_parsed()
            dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
                num_workers=self._loader.worker_count, per_worker_buffer_size=self._loader.worker_buffer_size))
        return dataset

    def __iter__(self) -> DataIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._iterator is None:
            self._iterator = iter(self._dataset())
        batch = next(self._iterator)
        self._batches += 1
        # Copies of grain's shared-memory arrays (from workers), so no batch outlives or pins its segment.
        return {key: value if type(value) is np.ndarray else np.array(value) for key, value in batch.items()}

    def close(self) -> None:
        """Stops the decoding workers (if any); the next batch restarts them at the current position."""
        if self._iterator is not None and hasattr(self._iterator, "close"):
            self._iterator.close()
        self._start, self._batches, self._iterator = self.get_state()["examples"], 0, None

    def get_state(self) -> dict[str, int]:
        """The position after the last batch returned: a small JSON-able dict."""
        return {"examples": self._start + self._batches * self._batch * self._count, "seed": self._seed,
                "num_records": self._num_records}

    def set_state(self, state: dict[str, int]) -> None:
        """Continues from a `get_state()` dict; raises ConfigError/DataError if it belongs to another order."""
        if state.get("seed") != self._seed:
            raise ConfigError(f"data iterator state has seed={state.get('seed')}; this iterator has seed={self._seed}")
        if state.get("num_records") != self._num_records:
            raise DataError(f"data iterator state was saved over {state.get('num_records')} records; this source "
                            f"has {self._num_records} (rebuilt dataset?)")
        examples = int(state["examples"])
        if examples < 0:
            raise DataError(f"data iterator state examples={examples}; expected >= 0")
        self._start, self._batches, self._iterator = examples, 0, None
