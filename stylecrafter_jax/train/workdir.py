"""The work directory's record of its run's config, so a restart with another model or stage is refused."""

from __future__ import annotations

import json
import os

import ml_collections

from stylecrafter_jax.errors import ConfigError

STRUCTURAL = ("model", "stage")


def check_workdir(config: ml_collections.ConfigDict, *, write: bool) -> None:
    """Raise ConfigError if `config.workdir` holds a run whose model or stage differs; else record this one."""
    path = os.path.join(config.workdir, "config.json")
    current = json.loads(config.to_json_best_effort())
    if os.path.exists(path):
        with open(path) as f:
            recorded = json.load(f)
        old = _flatten({k: recorded.get(k) for k in STRUCTURAL})
        new = _flatten({k: current[k] for k in STRUCTURAL})
        diffs = [f"{key}: recorded {old.get(key)!r}, now {new.get(key)!r}" for key in sorted(set(old) | set(new))
                 if old.get(key) != new.get(key)]
        if diffs:
            raise ConfigError(f"work directory {config.workdir} holds a run of another config; use a new "
                              "--config.workdir or the same config:\n  " + "\n  ".join(diffs[:20]))
        return
    if write:
        os.makedirs(config.workdir, exist_ok=True)
        with open(path + ".tmp", "w") as f:  # renamed when complete: other hosts may be reading it already
            json.dump(current, f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts -> {"a.b.c": leaf}."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, object] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return out
