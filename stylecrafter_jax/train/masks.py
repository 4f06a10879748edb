"""Stage masks: label every parameter by the first matching (regex, label) rule of the stage."""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import numpy as np

from stylecrafter_jax.errors import ConfigError

TRAIN, FROZEN = "train", "frozen"


def path_string(path: tuple) -> str:
    """A pytree key path as the `/`-joined string the rules match."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def label_params(params: Any, rules: Sequence[tuple[str, str]]) -> Any:
    """A pytree of labels ("train"/"frozen") with the structure of `params`."""
    compiled = [(re.compile(pattern), label) for pattern, label in rules]
    for _, label in compiled:
        if label not in (TRAIN, FROZEN):
            raise ConfigError(f"stage rule label {label!r}: expected {TRAIN!r} or {FROZEN!r}")

    def label(path, _):
        name = path_string(path)
        for pattern, lab in compiled:
            if pattern.search(name):
                return lab
        raise ConfigError(f"parameter {name!r} matches no stage rule; end the rules with ('.*', 'frozen')")

    return jax.tree_util.tree_map_with_path(label, params)


def count_by_label(params: Any, labels: Any) -> dict[str, int]:
    """Number of parameters per label (works on arrays and ShapeDtypeStructs)."""
    counts = {TRAIN: 0, FROZEN: 0}
    for leaf, lab in zip(jax.tree.leaves(params), jax.tree.leaves(labels)):
        counts[lab] += int(np.prod(leaf.shape))
    return counts
