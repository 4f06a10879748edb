"""The config every entry point starts from: model, stage, data, train, mesh, work directory."""

from __future__ import annotations

import ml_collections

from configs.data import data_config
from configs.models import model_config
from configs.parallel import mesh_config
from configs.training import train_config


def base_config(size: str, stage: str, source: str = "tfds") -> ml_collections.ConfigDict:
    """A locked config for a model size, a training stage and a data source ("tfds" or "synthetic")."""
    config = ml_collections.ConfigDict()
    config.model = model_config(size)
    config.stage = stage
    config.data = data_config(stage, "full" if size == "full" else "tiny", source)
    config.train = train_config(stage)
    config.mesh = mesh_config()
    config.pretrained = ""  # converted checkpoint directory of the frozen base weights; "" = random init
    config.workdir = f"runs/{stage}-{size}"
    config.seed = 0
    config.lock()
    return config
