"""The run config every entry point starts from: model, stage, data, train, mesh, sampling, work directory.

`base_config` is a StyleCrafter training run; `image_to_video_config` the same run with an image-to-video
model (VideoCrafter1 I2V, DynamiCrafter; size tables in `stylecrafter_jax.models.variants`), the style
adapter removed; `inference_config` a generation run with the official sampling settings.
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.data.defaults import data_config
from stylecrafter_jax.models import variants
from stylecrafter_jax.models.sizes import model_config
from stylecrafter_jax.parallel.defaults import mesh_config
from stylecrafter_jax.sampling.settings import get_sampling_config, pixels_per_latent


def train_config() -> ml_collections.ConfigDict:
    """Stage-neutral defaults (AdamW β 0.9/0.999, eps 1e-8); a stage's config file sets its own steps and rates."""
    return ml_collections.ConfigDict(dict(
        steps=10_000,
        learning_rate=1e-4,
        schedule="constant",  # constant | warmup | linear_decay
        warmup_steps=0,
        decay_steps=20_000,  # linear_decay: ticks from 1.0 to final_decay_ratio
        decay_every=1,  # optimizer steps per tick (the reference's Lightning frequency was 100)
        final_decay_ratio=0.01,
        weight_decay=0.01,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        grad_clip=1.0,  # global-norm clipping; 0 = off
        ema_decay=0.0,  # 0 = no EMA
        # Loss: eps-prediction MSE; "v" weights by 1/ᾱ_t (the v-prediction loss), capped at
        # loss_weight_cap (0 = no cap); timesteps uniform, or biased toward high noise with density ∝ u^(1/power).
        loss_weighting="uniform",  # uniform | v
        loss_weight_cap=0.0,
        timestep_sampling="uniform",  # uniform | high_noise
        high_noise_power=2.0,
        # Condition dropout for guidance, per sample: text only, style only, both.
        drop_text=0.0,
        drop_style=0.0,
        drop_both=0.0,
        log_every=50,
        checkpoint_every=1000,
        keep_checkpoints=3,
        async_checkpoint=True,
        sample_every=0,  # 0 = no periodic samples (see the `periodic` section)
        eval_every=0,  # 0 = no periodic evaluation
        peak_flops_per_device=0.0,  # 0 = look up by device kind (no MFU when unknown)
    ))


def base_config(size: str, stage: str = "full") -> ml_collections.ConfigDict:
    """A locked, stage-neutral config for a model size, named after `stage` (`config.stage`, the workdir)."""
    config = ml_collections.ConfigDict()
    config.model = model_config(size)
    config.stage = stage
    config.data = data_config("full" if size == "full" else "tiny")
    config.train = train_config()
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
    # official evaluation JSON; metrics use the evaluation config of that arg
    # (`stylecrafter_jax.evaluation.defaults`) with these encoder weights.
    config.periodic = ml_collections.ConfigDict(dict(
        eval_json="", eval_root="", entries=2, seed=123, evaluation="video", clip_checkpoint="", clip_format="open_clip",
        dino_checkpoint=""))
    config.lock()
    return config


def image_to_video_config(variant: str, size: str) -> ml_collections.ConfigDict:
    """A locked config of the variant at the size; stage "full" trains the U-Net."""
    config = base_config(size, "full")
    frames, height, width = variants.latent_shape(variant, size)
    with config.unlocked():
        model = config.model
        del model.adapter
        model.variant = variant
        model.unet = ml_collections.ConfigDict(variants.unet_fields(variant, size))
        model.projector = ml_collections.ConfigDict(variants.projector_fields(variant, size))
        model.image_encoder.update(variants.IMAGE_ENCODER_OVERRIDES)
        model.diffusion.update(variants.diffusion_fields(variant))
        model.update(frames=frames, latent_height=height, latent_width=width)
        factor = 2 ** (len(model.vae.ch_mult) - 1)
        config.sampling.update(height=height * factor, width=width * factor, frames=frames)
        config.workdir = f"runs/{variant}-{size}"
    return config


def inference_config(size: str = "full", mode: str = "video") -> ml_collections.ConfigDict:
    """The StyleCrafter model of the named size with the sampling section of `mode` ("video" or "image")."""
    config = base_config(size, "stage2")
    with config.unlocked():
        config.workdir = f"runs/inference-{size}"
        config.sampling = get_sampling_config(mode)
        if size != "full":  # the model's own latent size
            factor = pixels_per_latent(config.model)
            config.sampling.height = config.model.latent_height * factor
            config.sampling.width = config.model.latent_width * factor
            config.sampling.frames = 1 if mode == "image" else config.model.frames
    return config
