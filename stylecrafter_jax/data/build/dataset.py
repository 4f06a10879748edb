"""One build: a source folder of images or videos into a tfds dataset (ArrayRecord) with its report beside it."""

from __future__ import annotations

from etils import epath

from stylecrafter_jax.data.build.builder_base import MediaBuilder, prepare
from stylecrafter_jax.data.build.options import BuildOptions
from stylecrafter_jax.data.build.report import BuildReport
from stylecrafter_jax.data.build.style_images import StyleImages
from stylecrafter_jax.data.build.videos import Videos
from stylecrafter_jax.errors import DataError

BUILDERS: dict[str, type[MediaBuilder]] = {"images": StyleImages, "videos": Videos}
REPORT_FILE = "build_report.json"


def build_dataset(kind: str, source: str, out: str, captions: str | None = None,
                  options: BuildOptions = BuildOptions(), overwrite: bool = False) -> BuildReport:
    """Builds `style_images` (kind "images") or `videos` under `out`; returns the report, also saved as JSON.

    Raises DataError if the dataset already exists (unless `overwrite`) or the source has nothing usable.
    """
    if kind not in BUILDERS:
        raise DataError(f"kind={kind!r}; expected one of {sorted(BUILDERS)}")
    def write_report(builder: MediaBuilder) -> None:
        (epath.Path(builder.data_dir) / REPORT_FILE).write_text(builder.report.to_json())

    return prepare(BUILDERS[kind], out, overwrite, finish=write_report, source=source, captions=captions,
                   options=options).report
