"""Record sources for the pipeline: a built tfds dataset (ArrayRecord, random access) or a synthetic one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ml_collections
import tensorflow_datasets as tfds
from etils import epath

from stylecrafter_jax.data.synthetic import SyntheticImages, SyntheticVideos
from stylecrafter_jax.errors import ConfigError, DataError
from stylecrafter_jax.paths import DEFAULT_LOCAL_CACHE, local_copy


def _version_dir(data_dir: str, name: str) -> epath.Path:
    root = epath.Path(data_dir) / name  # local or a bucket (gs://...)
    versions = [d for d in root.glob("*") if (d / "dataset_info.json").is_file()]
    if not versions:
        raise DataError(f"no built dataset {name!r} under data_dir={data_dir!r} (looked for {root}/<version>/"
                        f"dataset_info.json); build one with python -m stylecrafter_jax.data.build")
    return max(versions, key=lambda d: tfds.core.Version(d.name))


def open_tfds(data_dir: str, name: str, split: str = "train", local_cache: str = DEFAULT_LOCAL_CACHE
              ) -> Sequence[dict[str, Any]]:
    """The random-access source of a built dataset: `data_dir/name/<newest version>`, split `split`.

    A dataset in a bucket (gs://...) is first copied under `local_cache` (once; files of the right size are
    kept): ArrayRecord reads local files only. For datasets larger than a host's disk, mount the bucket
    (gcsfuse) and give its local path instead.
    """
    version_dir = local_copy(str(_version_dir(data_dir, name)), local_cache)
    source = tfds.builder_from_directory(version_dir).as_data_source(split)
    if len(source) == 0:
        raise DataError(f"dataset {name!r} under {data_dir!r} split {split!r} has no records")
    return source


def local_cache(data: ml_collections.ConfigDict) -> str:
    """Where a data section's bucket datasets are copied: `data.local_cache`, or the default."""
    return data.get("local_cache", DEFAULT_LOCAL_CACHE)


def open_source(kind: str, config: ml_collections.ConfigDict, seed: int, local_cache: str = DEFAULT_LOCAL_CACHE
                ) -> Sequence[dict[str, Any]]:
    """The source named by `config.source` ("tfds" or "synthetic") for `kind` ("images" or "videos"); built
    datasets in a bucket are copied under `local_cache` first."""
    if config.source == "tfds":
        if not config.data_dir:
            raise ConfigError(f"data.{kind}.data_dir is empty; expected the --out folder of the build")
        return open_tfds(config.data_dir, config.name, config.split, local_cache)
    if config.source == "synthetic":
        synthetic = config.synthetic
        if kind == "images":
            return SyntheticImages(synthetic.num_records, tuple(synthetic.size), seed)
        return SyntheticVideos(synthetic.num_records, synthetic.num_frames, tuple(synthetic.size), synthetic.fps, seed)
    raise ConfigError(f"data.{kind}.source={config.source!r}; expected 'tfds' or 'synthetic'")
