"""Training metrics: one printed line per log step, the same scalars to JSONL and TensorBoard."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

from etils import epath
from tqdm import tqdm

from stylecrafter_jax.paths import is_url, write_text


class MetricsLogger:
    """Writes scalars to `workdir/metrics.jsonl` and TensorBoard event files (primary host only).

    A work directory in a bucket (gs://...) gets both as whole objects rewritten at each log step (objects
    cannot be appended to): the JSONL through fsspec, the events through tensorboardX's GCS writer.
    """

    def __init__(self, workdir: str, *, primary: bool, total_steps: int, start_step: int = 0,
                 print_fn: Callable[[str], None] = print):
        self.primary = primary
        self.print_fn = print_fn
        self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
        self.writer = None
        self._rows = None  # the JSONL so far, for a work directory in a bucket
        if primary:
            from tensorboardX import SummaryWriter

            if is_url(workdir):
                self._rows = epath.Path(self.jsonl_path).read_text() if epath.Path(self.jsonl_path).exists() else ""
            else:
                os.makedirs(workdir, exist_ok=True)
            self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
        self.progress = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                             disable=not (primary and sys.stderr.isatty()))

    def advance(self, steps: int = 1) -> None:
        """Move the progress bar."""
        self.progress.update(steps)

    def log(self, step: int, scalars: dict[str, Any], *, echo: bool = True) -> None:
        """Record `scalars` at `step`: one line on stdout, a JSONL row, TensorBoard scalars."""
        row = {"step": int(step), **{k: _plain(v) for k, v in scalars.items()}}
        if echo:
            self.print_fn(" ".join(_format(k, v) for k, v in row.items()))
        if not self.primary:
            return
        if self._rows is None:
            with open(self.jsonl_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        else:
            self._rows += json.dumps(row) + "\n"
            write_text(self.jsonl_path, self._rows)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, int(step))
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the writers."""
        self.progress.close()
        if self.writer is not None:
            self.writer.close()


def _plain(value: Any) -> Any:
    """numpy/jax scalars -> Python numbers; everything else as is."""
    return value.item() if hasattr(value, "item") else value


def _format(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{key}={value:.4g}"
    return f"{key}={value}"
