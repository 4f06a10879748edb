"""What to generate: prompts with their style references, from the command line, a prompts file or an eval JSON.

The official evaluation JSON is a list of `{"prompt": str, "style_path": str | [str, ...]}` entries with
paths relative to a root folder; a list means several references for one sample. Entries keep their
JSON order, which gives the output file numbers (`%04d`).
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple, Sequence

from stylecrafter_jax.errors import DataError


class SampleRequest(NamedTuple):
    """One entry: its number in the run, prompt and style reference paths.

    `listed` records whether the references came as a list (the official code then names the saved
    references `%04d_%02d.png`, even for one) or as a single path (`%04d.png`).
    """

    entry: int
    prompt: str
    style_paths: tuple[str, ...]
    listed: bool

    @property
    def num_refs(self) -> int:
        """How many style references this entry has."""
        return len(self.style_paths)


def requests_from_prompts(prompts: Sequence[str], style_paths: Sequence[str]) -> list[SampleRequest]:
    """One request per prompt, every prompt with the same references (several paths = several references)."""
    if not prompts:
        raise DataError("no prompt given: pass --prompt TEXT, --prompts FILE or --eval-json FILE")
    if not style_paths:
        raise DataError("no style image given: pass --style IMAGE (repeat it for several references)")
    styles = tuple(os.fspath(p) for p in style_paths)
    return [SampleRequest(i, prompt, styles, len(styles) > 1) for i, prompt in enumerate(prompts)]


def read_prompts_file(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a UTF-8 text file, stripped; DataError if there are none."""
    path = os.fspath(path)
    text = _read_text(path, "prompts file")
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise DataError(f"prompts file {path!r} holds no prompt: expected one prompt per line")
    return prompts


def read_eval_json(path: str | os.PathLike, root: str | os.PathLike) -> list[SampleRequest]:
    """The requests of an official evaluation JSON, style paths joined to `root`."""
    path, root = os.fspath(path), os.fspath(root)
    if not os.path.isdir(root):
        raise DataError(f"eval root {root!r} is not a directory: expected the folder the style paths of "
                        f"{path!r} are relative to")
    try:
        entries = json.loads(_read_text(path, "eval JSON"))
    except json.JSONDecodeError as e:
        raise DataError(f"eval JSON {path!r} is not valid JSON: {e}") from e
    if not isinstance(entries, list) or not entries:
        raise DataError(f"eval JSON {path!r}: expected a non-empty list of {{\"prompt\", \"style_path\"}} "
                        f"objects, got {type(entries).__name__}{' (empty)' if entries == [] else ''}")
    return [_eval_entry(path, root, i, entry) for i, entry in enumerate(entries)]


def _eval_entry(path: str, root: str, index: int, entry: object) -> SampleRequest:
    """One checked JSON entry."""
    where = f"eval JSON {path!r}, entry {index}"
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object with \"prompt\" and \"style_path\", got {entry!r}")
    missing = [key for key in ("prompt", "style_path") if key not in entry]
    if missing:
        raise DataError(f"{where}: missing {' and '.join(repr(k) for k in missing)} (keys: {sorted(entry)})")
    prompt, styles = entry["prompt"], entry["style_path"]
    if not isinstance(prompt, str):
        raise DataError(f"{where}: \"prompt\" must be a string, got {prompt!r}")
    listed = isinstance(styles, list)
    styles = styles if listed else [styles]
    if not styles or not all(isinstance(s, str) and s for s in styles):
        raise DataError(f"{where}: \"style_path\" must be a path or a non-empty list of paths, got "
                        f"{entry['style_path']!r}")
    return SampleRequest(index, prompt, tuple(os.path.join(root, s) for s in styles), listed)


def check_style_files(requests: Sequence[SampleRequest]) -> None:
    """DataError naming the first style path that is missing or is not a regular file."""
    for request in requests:
        for style in request.style_paths:
            if os.path.isdir(style):
                raise DataError(f"style image {style!r} (entry {request.entry}) is a directory, expected an "
                                "image file")
            if not os.path.isfile(style):
                raise DataError(f"style image {style!r} (entry {request.entry}) does not exist")


class SampleJob(NamedTuple):
    """One sample to draw: its request, its number among the request's samples, its position in the run.

    The position (`index`) selects the noise: the sample's key is fold_in(seed, index).
    """

    request: SampleRequest
    sample: int
    index: int


def expand_samples(requests: Sequence[SampleRequest], samples_per_prompt: int = 1) -> list[SampleJob]:
    """Every request `samples_per_prompt` times, request-major, numbered in run order."""
    if samples_per_prompt < 1:
        raise DataError(f"samples per prompt: got {samples_per_prompt}, expected an integer >= 1")
    return [SampleJob(request, i, position * samples_per_prompt + i)
            for position, request in enumerate(requests) for i in range(samples_per_prompt)]


def batch_jobs(jobs: Sequence[SampleJob], batch_size: int) -> list[list[SampleJob]]:
    """Contiguous batches of at most `batch_size` jobs, split where the number of references changes."""
    if batch_size < 1:
        raise DataError(f"batch size: got {batch_size}, expected an integer >= 1")
    batches: list[list[SampleJob]] = []
    for job in jobs:
        last = batches[-1] if batches else None
        if last is None or len(last) == batch_size or last[0].request.num_refs != job.request.num_refs:
            batches.append([job])
        else:
            last.append(job)
    return batches


def _read_text(path: str, what: str) -> str:
    """The UTF-8 text of a file; DataError naming the file if it is missing, a directory or not UTF-8."""
    if os.path.isdir(path):
        raise DataError(f"{what} {path!r} is a directory, expected a file")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError as e:
        raise DataError(f"{what} {path!r} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{what} {path!r} cannot be read: {type(e).__name__}: {e}") from e
