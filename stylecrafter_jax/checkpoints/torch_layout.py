"""Tensor transforms between the PyTorch layouts and ours, and the strict state-dict check.

Each transform maps one torch tensor (numpy) to one Flax leaf; `inverse` maps it back, so that an
import followed by an export is bit-identical.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from stylecrafter_jax.errors import CheckpointMismatchError

FORWARD = {
    "as-is": lambda w: w,
    "dense": lambda w: w.T,  # Linear (O, I) -> (I, O)
    "conv": lambda w: w.transpose(2, 3, 1, 0),  # Conv2d (O, I, kh, kw) -> (kh, kw, I, O)
    "conv3d": lambda w: w.transpose(2, 3, 4, 1, 0),  # Conv3d (O, I, kt, kh, kw) -> (kt, kh, kw, I, O)
    "conv1d_k1": lambda w: w[:, :, 0].T,  # Conv1d k=1 (O, I, 1) -> Dense (I, O)
    "conv1x1_dense": lambda w: w[:, :, 0, 0].T,  # Conv2d 1x1 (O, I, 1, 1) -> Dense (I, O)
}

INVERSE = {
    "as-is": lambda w: w,
    "dense": lambda w: w.T,
    "conv": lambda w: w.transpose(3, 2, 0, 1),
    "conv3d": lambda w: w.transpose(4, 3, 0, 1, 2),
    "conv1d_k1": lambda w: w.T[:, :, None],
    "conv1x1_dense": lambda w: w.T[:, :, None, None],
}


def to_flax(tensor: np.ndarray, transform: str) -> np.ndarray:
    """Apply the named torch→Flax transform."""
    return FORWARD[transform](tensor)


def to_torch(leaf: np.ndarray, transform: str) -> np.ndarray:
    """Apply the inverse (Flax→torch) of the named transform."""
    return INVERSE[transform](leaf)


def split_packed(tensor: np.ndarray, parts: int = 3) -> list[np.ndarray]:
    """Split a packed in_proj weight (3E, E) or bias (3E,) into q, k, v along the first axis."""
    return list(np.split(tensor, parts, axis=0))


def check_state_dict(expected: Mapping[str, tuple[int, ...]], got: Mapping[str, tuple[int, ...]], *,
                     source: str, ignore: Iterable[str] = ()) -> None:
    """Raise one CheckpointMismatchError listing missing, unexpected and mis-shaped keys, if any.

    `expected` and `got` map keys to torch shapes; keys matching an `ignore` prefix are allowed
    to be unexpected.
    """
    ignore = tuple(ignore)
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(k for k in set(got) - set(expected) if not k.startswith(ignore))
    misshaped = sorted(f"{k}: file {tuple(got[k])}, model {tuple(expected[k])}"
                       for k in set(expected) & set(got) if tuple(got[k]) != tuple(expected[k]))
    if missing or unexpected or misshaped:
        raise CheckpointMismatchError(format_mismatch(source, missing, unexpected, misshaped))


def format_mismatch(source: str, missing: list[str], unexpected: list[str], misshaped: list[str],
                    limit: int = 20) -> str:
    """A readable report of what does not fit, at most `limit` keys per kind."""
    lines = [f"{source} does not fit the model:"]
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = "\n    ".join(keys[:limit])
            more = f"\n    ... and {len(keys) - limit} more" if len(keys) > limit else ""
            lines.append(f"  {len(keys)} {title} key(s):\n    {shown}{more}")
    return "\n".join(lines)
