"""What a run reports: the metrics logger (stdout, JSONL, TensorBoard), throughput and MFU over a step timer's
window, when periodic work is due, and the host-side stop on a step's non-finite loss or gradient."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
from etils import epath
from tqdm import tqdm

from stylecrafter_jax.errors import StyleCrafterError
from stylecrafter_jax.paths import is_url, write_text


def due(step: int, every: int, total: int | None = None) -> bool:
    """Whether work done every `every` steps (0: never) is due after `step`; the last step, `total`, always is."""
    return (every > 0 and step % every == 0) or step == total


# ===== Logger =====

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

# ===== Throughput =====

# Dense bf16 peak FLOP/s per device (vendor figures), by a substring of jax's device_kind; the first match wins,
# so "TPU v5 lite" (v5e) comes before "TPU v5" (what a v5p reports).
PEAK_FLOPS = (
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("TPU v6 lite", 918e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5", 459e12),
    ("TPU v4", 275e12),
)


def peak_flops_per_device(configured: float = 0.0, device_kind: str | None = None) -> float | None:
    """The configured peak, else the table's entry for the device kind, else None (no MFU)."""
    if configured:
        return float(configured)
    kind = device_kind if device_kind is not None else jax.devices()[0].device_kind
    return next((peak for name, peak in PEAK_FLOPS if name.lower() in kind.lower()), None)


def throughput(*, steps: int, seconds: float, examples: int, flops: float, num_devices: int,
               peak_per_device: float | None) -> dict[str, float]:
    """steps/s, examples/s (each global example counted once), TFLOP/s per device and MFU (peak known).

    `examples` and `flops` are totals over the window for the whole program (all devices together),
    so nothing is multiplied by the host count.
    """
    flops_per_device = flops / seconds / num_devices
    out = {"steps_per_s": steps / seconds, "examples_per_s": examples / seconds,
           "tflops_per_device": flops_per_device / 1e12}
    if peak_per_device:
        out["mfu"] = flops_per_device / peak_per_device
    return out


class StepTimer:
    """The steps, examples and FLOPs since the window started and the wall time they took, with the fetch of the
    first batch of each kind (its encoders' and its step's compiles) left out."""

    def __init__(self, *, num_devices: int, peak_per_device: float | None,
                 clock: Callable[[], float] = time.perf_counter):
        self.num_devices, self.peak_per_device, self.clock = num_devices, peak_per_device, clock
        self.kinds: set[str] = set()
        self.restart()

    def restart(self) -> None:
        """Start a new window now."""
        self.start, self.steps, self.examples, self.flops = self.clock(), 0, 0, 0.0

    def fetched(self, kind: str, *, since: float) -> None:
        """A batch of `kind` was fetched (encoded, compiled for) from `since` (a `clock` time) until now; the time
        of the first of its kind is not step time."""
        if kind not in self.kinds:
            self.kinds.add(kind)
            self.start += self.clock() - since

    def count(self, *, examples: int, flops: float) -> None:
        """One step of `examples` global examples and `flops` FLOPs."""
        self.steps, self.examples, self.flops = self.steps + 1, self.examples + examples, self.flops + flops

    def rates(self) -> dict[str, float]:
        """The `throughput` of the window so far."""
        return throughput(steps=self.steps, seconds=self.clock() - self.start, examples=self.examples,
                          flops=self.flops, num_devices=self.num_devices, peak_per_device=self.peak_per_device)


# ===== Non-finite steps =====

class TrainingStopped(StyleCrafterError, RuntimeError):
    """The run stopped on a non-finite loss or gradient; the message names the step."""


@jax.jit
def first_bad_step(bad: dict | None, metrics: dict, step: int) -> dict:
    """`bad` ({"step", "loss", "grad_norm"} of the first non-finite step; step 0 or None: none yet) after `step`."""
    if bad is None:
        bad = {"step": jnp.zeros((), jnp.int32), "loss": jnp.zeros_like(metrics["loss"]),
               "grad_norm": jnp.zeros_like(metrics["grad_norm"])}
    first = (bad["step"] == 0) & ~metrics["finite"]
    return {"step": jnp.where(first, step, bad["step"]), "loss": jnp.where(first, metrics["loss"], bad["loss"]),
            "grad_norm": jnp.where(first, metrics["grad_norm"], bad["grad_norm"])}


def check_finite(bad: dict | None, step: int) -> None:
    """Stop the run at `step` if a step before had a non-finite loss or gradient (`bad` of first_bad_step)."""
    bad = jax.device_get(bad)
    if bad is not None and int(bad["step"]):
        raise TrainingStopped(f"non-finite loss or gradient at step {int(bad['step'])} (loss={float(bad['loss'])}, "
                              f"grad_norm={float(bad['grad_norm'])}); that update was not applied; the run stopped "
                              f"at step {step}, before saving it; the newest checkpoint is intact")
