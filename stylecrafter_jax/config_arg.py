"""Parse the arg string of a config file (`--config=FILE.py:ARG`): comma-separated words, e.g. "tiny,synthetic"."""

from __future__ import annotations

from stylecrafter_jax.models.sizes import SIZES


def parse_arg(arg: str | None, allowed: tuple[str, ...] = ("synthetic",)) -> tuple[str, set[str]]:
    """(model size, flags) from "size[,flag...]"; unknown words are errors."""
    words = [w for w in (arg or "").split(",") if w]
    sizes = [w for w in words if w in SIZES]
    unknown = [w for w in words if w not in SIZES and w not in allowed]
    if unknown or len(sizes) > 1:
        raise ValueError(f"config arg {arg!r}: expected at most one size of {SIZES} and flags of {allowed}; "
                         f"unknown {unknown}" if unknown else f"config arg {arg!r}: several sizes {sizes}")
    return (sizes[0] if sizes else "full"), {w for w in words if w in allowed}
