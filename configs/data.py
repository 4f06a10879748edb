"""The `data` config on its own (the data section of a stage's config): `--config=configs/data.py:stage2,tiny,synthetic`.

Build a source first: python -m stylecrafter_jax.data.build --kind images --source DIR --out DATA_DIR.
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.data.defaults import KIND_OF_STAGE, data_config
from stylecrafter_jax.errors import ConfigError


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """`arg`: comma-separated stage (stage1/stage2/full), "tiny", "synthetic"; e.g. "stage2,tiny,synthetic"."""
    words = set((arg or "stage1").split(","))
    unknown = words - set(KIND_OF_STAGE) - {"tiny", "synthetic"}
    if unknown:
        raise ConfigError(f"configs/data.py:{arg}: unknown words {sorted(unknown)}; expected a stage "
                          f"{sorted(KIND_OF_STAGE)}, 'tiny', 'synthetic'")
    stage = next((w for w in words if w in KIND_OF_STAGE), "stage1")
    return data_config(stage, "tiny" if "tiny" in words else "full", "synthetic" if "synthetic" in words else "tfds")
