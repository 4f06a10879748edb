"""The work directory's record of its run's config and base weights, so a restart with another model, stage
or base is refused."""

from __future__ import annotations

import hashlib
import json
import os

import ml_collections
from etils import epath

from stylecrafter_jax import paths
from stylecrafter_jax.checkpoints.pretrained import MANIFEST, read_manifest
from stylecrafter_jax.errors import ConfigError

STRUCTURAL = ("model", "stage")
BASE_RECORD = "base_weights.json"


def check_workdir(config: ml_collections.ConfigDict, *, write: bool) -> None:
    """Raise ConfigError if `config.workdir` holds a run whose model or stage differs; else record this one."""
    path = os.path.join(config.workdir, "config.json")
    current = json.loads(config.to_json_best_effort())
    recorded = _recorded_or_write(path, current, write)
    if recorded is not None:
        old = _flatten({k: recorded.get(k) for k in STRUCTURAL})
        new = _flatten({k: current[k] for k in STRUCTURAL})
        diffs = [f"{key}: recorded {old.get(key)!r}, now {new.get(key)!r}" for key in sorted(set(old) | set(new))
                 if old.get(key) != new.get(key)]
        if diffs:
            raise ConfigError(f"work directory {config.workdir} holds a run of another config; use a new "
                              "--config.workdir or the same config:\n  " + "\n  ".join(diffs[:20]))


def check_base_weights(config: ml_collections.ConfigDict, *, write: bool) -> None:
    """Refuse a full-size run on a random base (unless `allow_random_base`) and a work directory trained on
    other base weights (ConfigError naming both); else record this run's base."""
    if config.model.size == "full" and not config.pretrained and not config.allow_random_base:
        raise ConfigError("full-size training needs --config.pretrained=DIR (converted base weights: python -m "
                          "stylecrafter_jax.convert import ...); --config.allow_random_base=True trains on a "
                          "random base anyway")
    path = os.path.join(config.workdir, BASE_RECORD)
    current = {"pretrained": config.pretrained, "base": base_weights_id(config)}
    recorded = _recorded_or_write(path, current, write)
    if recorded is not None and recorded["base"] != current["base"]:
        raise ConfigError(f"work directory {config.workdir} was trained on the base weights "
                          f"{_describe(recorded)}, not on {_describe(current)}: resume with the same "
                          "--config.pretrained or use a new --config.workdir")


def _recorded_or_write(path: str, current: dict, write: bool) -> dict | None:
    """The record at `path`, or None when there is none yet (then `current` is written there if `write`:
    whole, since other hosts may be reading it already)."""
    if epath.Path(path).exists():
        return json.loads(epath.Path(path).read_bytes())
    if write:
        paths.write_text(path, json.dumps(current, indent=2, sort_keys=True))
    return None


def base_weights_id(config: ml_collections.ConfigDict) -> str:
    """"random", or the sha256 of `config.pretrained`'s manifest (with the components taken, when chosen)."""
    if not config.pretrained:
        return "random"
    read_manifest(config.pretrained)  # a clear error when it is not a converted directory
    digest = hashlib.sha256(epath.Path(config.pretrained, MANIFEST).read_bytes()).hexdigest()
    components = f" (components {config.pretrained_components})" if config.pretrained_components else ""
    return f"manifest sha256 {digest}{components}"


def _describe(record: dict) -> str:
    return "random" if record["base"] == "random" else f"{record['pretrained']} ({record['base']})"


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts -> {"a.b.c": leaf}."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, object] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return out
