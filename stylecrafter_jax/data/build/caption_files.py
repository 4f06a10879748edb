"""Captions files (CSV, JSONL, plain text) and sidecar .txt files, read row by row without failing on one bad row."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

from stylecrafter_jax.errors import DataError

PATH_COLUMNS = ("path", "file_name", "filename", "file", "image", "video")
CAPTION_COLUMNS = ("caption", "text", "txt", "name")


@dataclasses.dataclass(frozen=True)
class CaptionRow:
    """One row: the media path it names (relative to the source folder or absolute) and its caption.

    `error` is set instead of a caption when the row cannot be used ("non-UTF-8 caption", "bad row").
    """

    path: str
    caption: str
    line: int
    error: str = ""


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: undecodable bytes kept by surrogateescape, or JSON "\ud800"
        return False
    return True


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.strip().lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _media_path(record: dict, path_col: str | None) -> str:
    """The path a row names: its path column, else WebVid's `page_dir/videoid.mp4` or `videoid.mp4`."""
    if path_col is not None:
        return str(record[path_col] or "")
    keys = {k.strip().lower(): k for k in record}
    videoid = str(record[keys["videoid"]] or "")
    page_dir = str(record[keys["page_dir"]] or "") if "page_dir" in keys else ""
    return os.path.join(page_dir, f"{videoid}.mp4") if videoid else ""


def _columns(file: Path, columns: list[str]) -> tuple[str | None, str]:
    path_col, caption_col = _pick(columns, PATH_COLUMNS), _pick(columns, CAPTION_COLUMNS)
    has_videoid = any(c.strip().lower() == "videoid" for c in columns)
    if caption_col is None or (path_col is None and not has_videoid):
        raise DataError(f"captions file {file}: columns {columns}; expected a path column (one of {PATH_COLUMNS}, "
                        f"or WebVid's videoid[, page_dir]) and a caption column (one of {CAPTION_COLUMNS})")
    return path_col, caption_col


def _row(record: dict, path_col: str | None, caption_col: str, line: int) -> CaptionRow:
    try:
        path, caption = _media_path(record, path_col), record[caption_col]
    except (KeyError, TypeError):
        return CaptionRow("", "", line, "bad caption row")
    if not isinstance(caption, str) or not path:
        return CaptionRow(path, "", line, "bad caption row")
    if not _is_utf8(caption) or not _is_utf8(path):
        return CaptionRow(path.encode("utf-8", "replace").decode(), "", line, "non-UTF-8 caption")
    return CaptionRow(path, caption.strip(), line)


def _read_csv(file: Path) -> list[CaptionRow]:
    with open(file, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        path_col, caption_col = _columns(file, list(reader.fieldnames or []))
        return [_row(record, path_col, caption_col, line) for line, record in enumerate(reader, start=2)]


def _read_jsonl(file: Path) -> list[CaptionRow]:
    rows, cols = [], None
    for line, raw in enumerate(file.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            rows.append(CaptionRow(f"{file.name}:{line}", "", line, "non-UTF-8 caption"))
            continue
        except json.JSONDecodeError:
            rows.append(CaptionRow(f"{file.name}:{line}", "", line, "bad caption row"))
            continue
        if not isinstance(record, dict):
            rows.append(CaptionRow(f"{file.name}:{line}", "", line, "bad caption row"))
            continue
        cols = cols or _columns(file, list(record))
        rows.append(_row(record, cols[0], cols[1], line))
    return rows


def read_caption_rows(file: str | os.PathLike) -> list[CaptionRow]:
    """All rows of a .csv or .jsonl captions file (`path, caption`, or WebVid's `videoid, name[, page_dir]`)."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"captions file {file} does not exist")
    if file.suffix.lower() == ".csv":
        return _read_csv(file)
    if file.suffix.lower() in (".jsonl", ".json"):
        return _read_jsonl(file)
    raise DataError(f"captions file {file}: suffix {file.suffix!r}; expected .csv or .jsonl")


def read_caption_column(file: str | os.PathLike) -> list[str]:
    """Just the captions of a captions file, or the lines of a plain text file (for the before/after tool)."""
    file = Path(file)
    if file.suffix.lower() in (".csv", ".jsonl", ".json"):
        return [row.caption for row in read_caption_rows(file) if not row.error]
    return [line for line in file.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def read_sidecar(file: str | os.PathLike) -> str:
    """The caption in a sidecar .txt file; raises DataError if it is not UTF-8."""
    try:
        return Path(file).read_bytes().decode("utf-8-sig").strip()
    except UnicodeDecodeError as e:
        raise DataError(f"sidecar caption {file} is not UTF-8: {e}") from e
