"""The config every entry point starts from: model, stage, data, train, mesh, work directory."""

from __future__ import annotations

import ml_collections

from configs.data import data_config
from configs.models import model_config
from configs.parallel import mesh_config
from configs.sampling import get_sampling_config
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
    config.pretrained_components = ""  # comma-separated components to take from it; "" = every one it has
    config.allow_random_base = False  # full size without `pretrained` is refused unless this is set
    # The weights that sampling (sample/evaluate, periodic evaluation) uses: "" = the trained weights, "ema" =
    # their EMA (train.ema_decay > 0; the export's "ema" variant).
    config.weights_variant = ""
    config.workdir = f"runs/{stage}-{size}"
    config.seed = 0
    config.sampling = get_sampling_config("video")  # 16x320x512 at full size; the model's own size otherwise
    if size != "full":
        factor = 2 ** (len(config.model.vae.ch_mult) - 1)
        config.sampling.update(height=config.model.latent_height * factor, width=config.model.latent_width * factor,
                               frames=config.model.frames)
    # Periodic samples (train.sample_every) and metrics (train.eval_every) of the first `entries` entries of an
    # official evaluation JSON; metrics use configs/evaluation.py:<evaluation> with these encoder weights.
    config.periodic = ml_collections.ConfigDict(dict(
        eval_json="", eval_root="", entries=2, seed=123, evaluation="video", clip_checkpoint="", clip_format="open_clip",
        dino_checkpoint=""))
    config.lock()
    return config
