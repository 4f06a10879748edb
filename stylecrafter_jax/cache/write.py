"""Writing a cached dataset: the frozen encoders of a run as functions of a pipeline batch, run once over the
data, their outputs stored per example.

The train step then reads latents and embeddings (data.kind "cached") and never runs the encoders. Each
encoder maps a batch dict of the image or video pipeline (keys of `data/pipeline.py`) to an array whose
leading axis is the batch. The random parts of the pipeline (style crop, clip stride) are drawn once per
stored example; `num_epochs` > 1 stores that many differently augmented copies of every record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from stylecrafter_jax.cache.read import TARGET_KEYS
from stylecrafter_jax.conditioning.encoders import encode_text_context
from stylecrafter_jax.conditioning.frozen import Encoders, encode_posterior, style_tokens, uint8_to_signed
from stylecrafter_jax.conditioning.tokenizer import ClipTokenizer
from stylecrafter_jax.data.build.builder_base import prepare
from stylecrafter_jax.data.pipeline import DataIterator, LoaderOptions
from stylecrafter_jax.data.readers import local_cache, open_source
from stylecrafter_jax.data.tokens import CaptionTokens
from stylecrafter_jax.data.transforms import ImageTransform, VideoTransform
from stylecrafter_jax.errors import DataError, ShapeError

Encoder = Callable[[dict[str, np.ndarray]], Any]


def cache_encoders(config: ml_collections.ConfigDict, encoders: Encoders, params: dict[str, Any],
                   tokenizer: ClipTokenizer) -> dict[str, Encoder]:
    """The functions of an image or video pipeline batch whose outputs a cached dataset of the run stores."""
    captions = CaptionTokens.from_config(config.data.captions, tokenizer)

    def text_context(batch: dict[str, np.ndarray]) -> np.ndarray:
        tokens = jnp.asarray(captions.ids(batch["caption"]))
        return np.asarray(encode_text_context(encoders.text, params["text_encoder"], tokens))

    def image_tokens(batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(style_tokens(encoders, params, jnp.asarray(batch["style"])))

    def target(batch: dict[str, np.ndarray]) -> np.ndarray:
        video = uint8_to_signed(jnp.asarray(batch["video"] if "video" in batch else batch["image"][:, None]))
        if encoders.vae is None:
            return np.asarray(video)
        return np.asarray(encode_posterior(encoders.vae, params["vae"], video))

    return {"text_context": text_context, "image_tokens": image_tokens,
            TARGET_KEYS[encoders.vae is None]: target}


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
