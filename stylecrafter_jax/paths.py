"""Paths that may name a bucket (gs://...) or a local folder: absolute forms, and local staging of files.

What etils.epath already does (exists, is_file, read_bytes, ... on either kind, through gcsfs) is called there;
here: whole-file writes, uploads and local copies, through fsspec.
ArrayRecord files are read and written by a C++ library that opens local files only, so datasets in a
bucket are staged: built in a local folder and uploaded, or downloaded once into a local cache.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Iterator

import fsspec

DEFAULT_LOCAL_CACHE = os.path.join(tempfile.gettempdir(), "stylecrafter-data")  # local copies of bucket datasets


def is_url(path: str | os.PathLike) -> bool:
    """Whether `path` names a bucket object (gs://, s3://, ...) rather than a local file."""
    return "://" in os.fspath(path)


def absolute(path: str | os.PathLike) -> str:
    """`path` made absolute if local; a URL unchanged."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def write_text(path: str, text: str) -> None:
    """Write `text` whole to `path`, so that readers never see a part: locally through a renamed temporary
    file (parent folders created), in a bucket as one object upload."""
    if is_url(path):
        fs, inner = fsspec.core.url_to_fs(path)
        fs.pipe_file(inner, text.encode("utf-8"))
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)


def _files(path: str) -> tuple[fsspec.AbstractFileSystem, str, dict[str, int]]:
    """(filesystem, root, {relative path: size}) of the files under `path`, listed in one call."""
    fs, root = fsspec.core.url_to_fs(path)
    found = fs.find(root, detail=True)
    return fs, root, {os.path.relpath(name, root): int(info["size"]) for name, info in found.items()
                      if info["type"] == "file"}


def upload_file(local: str, target: str) -> None:
    """Copy the local file `local` to `target` (a URL) as one object."""
    fs, inner = fsspec.core.url_to_fs(target)
    fs.put_file(local, inner)


def upload_tree(local: str, target: str) -> None:
    """Copy the files under the local folder `local` to the same relative paths under `target`."""
    fs, root = fsspec.core.url_to_fs(target)
    for relative in _files(local)[2]:
        fs.makedirs(posixpath.dirname(f"{root}/{relative}"), exist_ok=True)  # a no-op in a bucket
        fs.put_file(os.path.join(local, relative), f"{root}/{relative}")


@contextlib.contextmanager
def local_staging(target: str) -> Iterator[str]:
    """A local folder to write into: `target` itself if local, else a temporary one uploaded to `target` on
    success."""
    if not is_url(target):
        yield target
        return
    with tempfile.TemporaryDirectory(prefix="stylecrafter-upload-") as local:
        yield local
        upload_tree(local, target)


def local_copy(path: str, cache_root: str) -> str:
    """`path` if local; else the folder under `cache_root` holding a copy of it, downloaded once (files whose
    size already matches are kept)."""
    if not is_url(path):
        return path
    local = os.path.join(cache_root, path.split("://", 1)[1])
    fs, root, files = _files(path)
    for relative, size in files.items():
        destination = os.path.join(local, relative)
        if os.path.isfile(destination) and os.path.getsize(destination) == size:
            continue
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        partial = f"{destination}.partial-{os.getpid()}"
        fs.get_file(f"{root}/{relative}", partial)
        os.replace(partial, destination)  # whole files only, also with several processes per host
    return local
