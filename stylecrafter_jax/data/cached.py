"""Cached dataset: run caller-supplied encoders (frozen VAE, CLIP text/vision) once, store their outputs.

The train step then reads latents and embeddings (data.kind "cached") and never runs the encoders. Each
encoder maps a batch dict of the image or video pipeline (keys of `pipeline.py`) to an array whose leading
axis is the batch. The random parts of the pipeline (style crop, clip stride) are drawn once per stored
example; `num_epochs` > 1 stores that many differently augmented copies of every record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from stylecrafter_jax.data.builder_base import prepare
from stylecrafter_jax.data.pipeline import DataIterator, LoaderOptions
from stylecrafter_jax.data.readers import local_cache, open_source
from stylecrafter_jax.data.transforms import ImageTransform, VideoTransform
from stylecrafter_jax.errors import DataError, ShapeError

Encoder = Callable[[dict[str, np.ndarray]], Any]


def cached_transform(record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A cached record as an example: arrays unchanged, the caption as str (no randomness left)."""
    del rng
    return {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in record.items()}


class CachedExamples(tfds.core.GeneratorBasedBuilder):
    """Encoder outputs per example (one Tensor feature each), with `caption` and `source_index`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}  # noqa: RUF012 -- tfds reads it as a class attribute

    def __init__(self, *, specs: Mapping[str, tuple[tuple[int, ...], np.dtype]] | None = None,
                 examples: Iterator[tuple[str, dict[str, Any]]] | None = None, **kwargs):
        self._specs, self._examples = dict(specs or {}), examples
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        features = {name: tfds.features.Tensor(shape=shape, dtype=dtype, encoding=tfds.features.Encoding.BYTES)
                    for name, (shape, dtype) in self._specs.items()}
        features.update(caption=tfds.features.Text(), source_index=tfds.features.Scalar(dtype=np.int64))
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features), disable_shuffling=True)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        return {"train": self._generate_examples()}

    def _generate_examples(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._examples


def _encode(encoders: Mapping[str, Encoder], batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    outputs = {}
    for name, encoder in encoders.items():
        out = np.asarray(encoder(batch))
        if out.dtype.kind not in "biuf":
            out = out.astype(np.float32)  # bfloat16 (an extension type) is stored as float32
        if out.ndim < 1 or out.shape[0] != len(batch["index"]):
            raise ShapeError(f"encoder {name!r} returned shape {out.shape}; expected leading axis "
                             f"{len(batch['index'])} (the batch)")
        outputs[name] = out
    return outputs


def _records(first: dict[str, np.ndarray], first_out: dict[str, np.ndarray], iterator: DataIterator,
             encoders: Mapping[str, Encoder], total: int) -> Iterator[tuple[str, dict[str, Any]]]:
    batch, outputs, written = first, first_out, 0
    while True:
        for i in range(len(batch["index"])):
            if written == total:
                return
            record = {name: out[i] for name, out in outputs.items()}
            record.update(caption=str(batch["caption"][i]), source_index=np.int64(batch["index"][i]))
            yield f"{written:012d}", record
            written += 1
        batch = next(iterator)
        outputs = _encode(encoders, batch)


def build_cached_dataset(data: ml_collections.ConfigDict, kind: str, encoders: Mapping[str, Encoder], out: str, *,
                         batch_size: int, num_epochs: int = 1, overwrite: bool = False) -> int:
    """Runs `encoders` over `num_epochs` epochs of the `kind` ("images"/"videos") pipeline of `data`, in record
    order, and writes `out/cached_examples/<version>`; returns the number of records written."""
    if kind not in ("images", "videos"):
        raise DataError(f"kind={kind!r}; expected 'images' or 'videos'")
    transform = ImageTransform.from_config(data) if kind == "images" else VideoTransform.from_config(data)
    source = open_source(kind, data[kind], data.seed, local_cache(data))
    iterator = DataIterator(source, transform, global_batch=batch_size, seed=data.seed, shuffle=False,
                            process_index=0, process_count=1, loader=LoaderOptions.from_config(data))
    first = next(iterator)
    first_out = _encode(encoders, first)
    specs = {name: (out.shape[1:], out.dtype) for name, out in first_out.items()}
    total = num_epochs * len(source)
    prepare(CachedExamples, out, overwrite, specs=specs,
            examples=_records(first, first_out, iterator, encoders, total))
    return total
