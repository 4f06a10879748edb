"""ml_collections configs: `get_config(arg)` files (stage1, stage2, toy) and their shared parts."""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from stylecrafter_jax.errors import ConfigError


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """`get_config(ARG)` of a `PATH.py[:ARG]` config file (".py" may be left out)."""
    path, _, arg = spec.partition(".py:")
    path = path if path.endswith(".py") else path + ".py"
    if not os.path.isfile(path):
        raise ConfigError(f"--config {spec!r}: no such config file {path!r}")
    module_spec = importlib.util.spec_from_file_location(f"_config_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
