"""The shared tfds builder: list a source folder, turn each item into a record (in worker processes), count skips."""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import tensorflow_datasets as tfds
from etils import epath
from tqdm import tqdm

from stylecrafter_jax.data.build.options import BuildOptions
from stylecrafter_jax.data.build.report import BuildReport, SkippedItem
from stylecrafter_jax.data.build.sources import SourceItem, list_items
from stylecrafter_jax.errors import DataError
from stylecrafter_jax.paths import local_staging

# What an example function returns: (record, below_minimum_size).
Example = tuple[dict[str, Any], bool]


def _guarded(example_fn: Callable[[SourceItem, BuildOptions], Example], options: BuildOptions, item: SourceItem
             ) -> Example | tuple[str, str]:
    """`example_fn(item)`, or a picklable (reason, detail) pair when the item cannot be used."""
    try:
        return example_fn(item, options)
    except SkippedItem as e:
        return e.reason, e.detail
    except Exception as e:  # noqa: BLE001 -- one unreadable file must never stop a build
        return f"unreadable ({type(e).__name__})", str(e)


def _results(fn: Callable[[SourceItem], Any], items: list[SourceItem], workers: int) -> Iterable[Any]:
    """`fn` over `items` in order; with workers > 1 in processes, at most 4 per worker in flight."""
    if workers == 1:
        yield from map(fn, items)
        return
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 4 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class MediaBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A builder of one `train` split from a source folder (`source`, optional `captions` file).

    Subclasses set KIND ("images"/"videos"), `features()` and EXAMPLE (a module-level function
    item, options -> (record, below_minimum_size), raising SkippedItem; run in worker processes). After `download_and_prepare`,
    `report` holds the counts. Records keep the source order (no write-time shuffling).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}
    KIND: ClassVar[str] = ""
    EXAMPLE: ClassVar[Callable[[SourceItem, BuildOptions], Example]]

    def __init__(self, *, source: str | None = None, captions: str | None = None,
                 options: BuildOptions = BuildOptions(), **kwargs):
        self._source, self._captions, self._options = source, captions, options
        self.report = BuildReport()
        super().__init__(**kwargs)

    def features(self) -> tfds.features.FeaturesDict:
        """The record features of this builder."""
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=self.features(), disable_shuffling=True,
                                              description=self.__class__.__doc__)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        if self._source is None:
            raise DataError(f"{self.name}: no source folder given to build from")
        items = list_items(self.KIND, self._source, self._captions, self.report)
        return {"train": self._generate_examples(items)}

    def _generate_examples(self, items: list[SourceItem]) -> Iterator[tuple[str, dict[str, Any]]]:
        fn = functools.partial(_guarded, type(self).EXAMPLE, self._options)
        with tqdm(total=len(items), desc=f"{self.name}: decoding {self.KIND}", unit="file") as bar:
            for item, result in zip(items, _results(fn, items, self._options.workers)):
                bar.update()
                if isinstance(result[0], str):
                    self.report.skip(result[0], item.key)
                    continue
                record, small = result
                if small:
                    self.report.keep_small(item.key)
                self.report.written += 1
                yield item.key, record
        if not self.report.written:
            raise DataError(f"source folder {self._source} has no usable {self.KIND}:\n{self.report.summary()}")


def prepare(builder_class: type[tfds.core.GeneratorBasedBuilder], out: str, overwrite: bool, *,
            finish: Callable[[tfds.core.GeneratorBasedBuilder], None] | None = None, **kwargs: Any
            ) -> tfds.core.GeneratorBasedBuilder:
    """Builds `builder_class(data_dir=out, **kwargs)` as ArrayRecord, then calls `finish(builder)` (to add files
    beside the dataset); an existing version is an error unless `overwrite`, which deletes it first.

    A bucket `out` (gs://...) is built in a local folder and uploaded when complete (ArrayRecord writes local
    files only); `builder.data_dir` then names the local copy, gone after the return.
    """
    target = epath.Path(out) / builder_class.name / str(builder_class.VERSION)
    if target.exists():  # checked before the builder exists: tfds would load the old dataset's info
        if not overwrite:
            raise DataError(f"{target} already exists; pass overwrite=True (--overwrite) to rebuild it")
        target.rmtree()
    with local_staging(out) as local_out, tempfile.TemporaryDirectory() as downloads:
        builder = builder_class(data_dir=local_out, **kwargs)
        builder.download_and_prepare(file_format="array_record", download_dir=downloads)  # nothing downloaded
        if finish is not None:
            finish(builder)
    return builder
