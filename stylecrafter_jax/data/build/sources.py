"""Source folders as lists of media items with captions: captions file, sidecar .txt, or a WikiArt-style tree."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from stylecrafter_jax.data.build.caption_files import read_caption_rows, read_sidecar
from stylecrafter_jax.data.build.report import BuildReport
from stylecrafter_jax.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")


@dataclasses.dataclass(frozen=True)
class SourceItem:
    """One media file to turn into a record.

    `key` is its path relative to the source folder (unique; stored in the record); `label` is the
    WikiArt-style top folder (the style name), "" for files at the top level.
    """

    path: str
    key: str
    caption: str
    label: str = ""


def wikiart_title(file_name: str) -> str:
    """A caption from a WikiArt file name: "claude-monet_water-lilies-1916.jpg" -> "water lilies"."""
    stem = Path(file_name).stem
    title = stem.split("_", 1)[1] if "_" in stem else stem
    words = [w for w in re.split(r"[-_\s]+", title) if w]
    while len(words) > 1 and words[-1].isdigit():
        words.pop()
    return " ".join(words)


def _label(key: str) -> str:
    parts = Path(key).parts
    return parts[0] if len(parts) > 1 else ""


def _walk(source: Path, suffixes: tuple[str, ...]) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(source):
        dirs.sort()
        files.extend(Path(root) / n for n in sorted(names) if n.lower().endswith(suffixes) and not n.startswith("."))
    return files


def _from_captions_file(source: Path, captions: Path, report: BuildReport) -> list[SourceItem]:
    items, seen = [], set()
    for row in read_caption_rows(captions):
        if row.error:
            report.skip(row.error, row.path or f"{captions.name}:{row.line}")
            continue
        path = Path(row.path) if os.path.isabs(row.path) else source / row.path
        key = os.path.relpath(path, source) if not os.path.isabs(row.path) else row.path
        if key in seen:
            report.skip("duplicate caption row", key)
            continue
        if not path.is_file():
            report.skip("missing file", key)
            continue
        seen.add(key)
        items.append(SourceItem(str(path), key, row.caption, _label(key)))
    return items


def _from_folder(source: Path, suffixes: tuple[str, ...], report: BuildReport, title_captions: bool
                 ) -> list[SourceItem]:
    items = []
    for path in _walk(source, suffixes):
        key = os.path.relpath(path, source)
        sidecar = path.with_suffix(".txt")
        if sidecar.is_file():
            try:
                caption = read_sidecar(sidecar)
            except DataError:
                report.skip("non-UTF-8 caption", key)
                continue
        elif title_captions and _label(key):
            caption = wikiart_title(path.name)
        else:
            report.skip("no caption", key)
            continue
        items.append(SourceItem(str(path), key, caption, _label(key)))
    return items


def list_items(kind: str, source: str | os.PathLike, captions: str | os.PathLike | None,
               report: BuildReport) -> list[SourceItem]:
    """The usable items of a source folder, counting unusable ones in `report`.

    With a captions file only its rows are used (paths relative to `source`). Without one, every media
    file under `source` is used with its sidecar `.txt` caption; for images in a WikiArt-style tree
    (`Style/artist_title-year.jpg`) a missing sidecar falls back to the title in the file name.
    """
    if kind not in ("images", "videos"):
        raise DataError(f"kind={kind!r}; expected 'images' or 'videos'")
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"source folder {source} does not exist")
    if captions is not None:
        items = _from_captions_file(source, Path(captions), report)
    else:
        suffixes = IMAGE_SUFFIXES if kind == "images" else VIDEO_SUFFIXES
        items = _from_folder(source, suffixes, report, title_captions=kind == "images")
    if not items:
        raise DataError(f"source folder {source} has no usable {kind} (captions file: {captions}); "
                        f"skipped:\n{report.summary()}")
    return items
