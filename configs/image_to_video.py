"""The config of an image-to-video model (VideoCrafter1 I2V, DynamiCrafter), shared by their config files.

The model section is StyleCrafter's with the style adapter removed and the U-Net, the projector, the
CLIP vision tower and the latent size of the variant's size table (`stylecrafter_jax.models.variants`).
"""

from __future__ import annotations

import ml_collections

from configs.base import base_config
from stylecrafter_jax.models import variants


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
