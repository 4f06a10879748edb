"""The config every entry point starts from: model, stage and work directory."""

from __future__ import annotations

import ml_collections

from configs.models import model_config


def base_config(size: str, stage: str) -> ml_collections.ConfigDict:
    """A locked config for a model size and a training stage."""
    config = ml_collections.ConfigDict()
    config.model = model_config(size)
    config.stage = stage
    config.workdir = f"runs/{stage}-{size}"
    config.seed = 0
    return config
