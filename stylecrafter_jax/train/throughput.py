"""Throughput and MFU: the global batch counted once, FLOPs per device against the device's peak."""

from __future__ import annotations

import jax

# Dense bf16 peak FLOP/s per device (vendor figures).
PEAK_FLOPS = (
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("TPU v6", 918e12),
    ("TPU v5p", 459e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
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
