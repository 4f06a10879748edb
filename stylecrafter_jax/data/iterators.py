"""The trainer's entry point: `make_iterator(config.data)` builds the iterator that `data.kind` names."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ml_collections
import numpy as np

from stylecrafter_jax.cache.read import cached_transform
from stylecrafter_jax.data.mixing import MixedIterator
from stylecrafter_jax.data.pipeline import DataIterator, LoaderOptions, resolve_processes
from stylecrafter_jax.data.readers import local_cache, open_source, open_tfds
from stylecrafter_jax.data.tokens import CaptionTokens
from stylecrafter_jax.data.transforms import ImageTransform, VideoTransform
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.toy.data import ToyStyleIterator

KINDS = ("images", "videos", "mixed", "cached", "toy")


def _iterator(data: ml_collections.ConfigDict, kind: str, process_index: int | None, process_count: int | None,
              tokens: CaptionTokens | None) -> DataIterator:
    if kind == "cached":  # the text context is stored: no tokens needed
        source = open_tfds(data.cached.data_dir, data.cached.name, local_cache=local_cache(data))
        transform, batch = cached_transform, data.cached.batch_size
        tokens = None
    else:
        transform = ImageTransform.from_config(data) if kind == "images" else VideoTransform.from_config(data)
        source, batch = open_source(kind, data[kind], data.seed, local_cache(data)), data[kind].batch_size
    return DataIterator(source, transform, global_batch=batch, seed=data.seed, shuffle=data.shuffle,
                        process_index=process_index, process_count=process_count,
                        loader=LoaderOptions.from_config(data), batch_map=tokens)


def make_iterator(data: ml_collections.ConfigDict, *, process_index: int | None = None,
                  process_count: int | None = None, tokenizer: Callable[[Sequence[str]], np.ndarray] | None = None
                  ) -> DataIterator | MixedIterator | ToyStyleIterator:
    """Host-local batches for `data.kind`: "images" (stage 1), "videos", "mixed" (stage 2), "cached" or
    "toy" (the toy's generated style images).

    `process_index` / `process_count` default to jax.process_index() / jax.process_count(). With a
    `tokenizer`, every batch that carries captions (all kinds but "cached") also carries their token ids
    under "tokens" (b, context) int32, the captions cleaned by `data.captions`, made in the pipeline.
    """
    if data.kind not in KINDS:
        raise ConfigError(f"data.kind={data.kind!r}; expected one of {KINDS}")
    tokens = None if tokenizer is None else CaptionTokens.from_config(data.captions, tokenizer)
    if data.kind == "toy":
        index, count = resolve_processes(process_index, process_count)
        return ToyStyleIterator(seed=data.seed, batch_size=data.toy.batch_size, image_size=data.toy.image_size,
                                style_size=data.toy.style_size, num_styles=data.toy.num_styles,
                                process_index=index, process_count=count, batch_map=tokens)
    if data.kind == "mixed":
        return MixedIterator(_iterator(data, "images", process_index, process_count, tokens),
                             _iterator(data, "videos", process_index, process_count, tokens), data.image_ratio,
                             data.seed)
    return _iterator(data, data.kind, process_index, process_count, tokens)
