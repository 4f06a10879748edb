"""Build a tfds dataset (ArrayRecord) from a source folder; CLI with a progress bar and a skip summary.

python -m stylecrafter_jax.data.build --kind images|videos --source DIR --out DATA_DIR [--captions FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import tensorflow_datasets as tfds
from etils import epath

from stylecrafter_jax.data.builder_base import MediaBuilder, prepare
from stylecrafter_jax.data.options import BuildOptions
from stylecrafter_jax.data.report import BuildReport
from stylecrafter_jax.data.style_images import StyleImages
from stylecrafter_jax.data.videos import Videos
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stylecrafter_jax.data.build", description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=sorted(BUILDERS), required=True)
    parser.add_argument("--source", required=True, help="folder of images or videos")
    parser.add_argument("--out", required=True, help="tfds data_dir to write <name>/<version>/ into")
    parser.add_argument("--captions", help="CSV/JSONL of path,caption (or WebVid videoid,name,page_dir); "
                                           "default: sidecar .txt files (and WikiArt file-name titles)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
    for field in dataclasses.fields(BuildOptions):
        flag = "--" + field.name.replace("_", "-")
        described = f"BuildOptions.{field.name} (default {field.default})"
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=described)
        else:
            parser.add_argument(flag, type=type(field.default), default=field.default, help=described)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the build; prints the summary; exits 1 with the message on DataError."""
    args = _parser().parse_args(argv)
    options = BuildOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BuildOptions)})
    tfds.disable_progress_bar()
    try:
        report = build_dataset(args.kind, args.source, args.out, args.captions, options, args.overwrite)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
