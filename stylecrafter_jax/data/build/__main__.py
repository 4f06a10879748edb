"""Build a tfds dataset (ArrayRecord) from a source folder; the command, with a progress bar and a skip summary.

python -m stylecrafter_jax.data.build --kind images|videos --source DIR --out DATA_DIR [--captions FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import tensorflow_datasets as tfds

from stylecrafter_jax.data.build.dataset import BUILDERS, build_dataset
from stylecrafter_jax.data.build.options import BuildOptions
from stylecrafter_jax.errors import DataError


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
