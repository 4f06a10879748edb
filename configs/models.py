"""Model configs: the full 320x512x16 StyleCrafter model and small ones for tests and benchmarks.

Keys of each sub-dict equal the fields of the module they build (`UNet3D`, `StyleAdapter`, ...).
"""

from __future__ import annotations

import ml_collections

from configs.encoders import image_encoder_config, text_encoder_config, vae_config
from stylecrafter_jax.diffusion.schedule import LINEAR_END, LINEAR_START, NUM_TRAIN_TIMESTEPS

SIZES = ("full", "medium", "tiny")


def unet_config(size: str) -> ml_collections.ConfigDict:
    """UNet3D fields for the named size."""
    full = dict(in_channels=4, out_channels=4, model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
                attention_resolutions=(4, 2, 1), num_head_channels=64, context_dim=1024, text_length=77,
                temporal_max_distance=16, addition_attention=True, init_attn_heads=8, init_attn_head_dim=64,
                norm_groups=32, style_adapter=True, style_attention_scaled=True)
    overrides = {
        "full": {},
        "medium": dict(model_channels=64, channel_mult=(1, 2, 4), num_head_channels=32, context_dim=64,
                       init_attn_heads=4, init_attn_head_dim=32),
        "tiny": dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
                     num_head_channels=16, context_dim=64, init_attn_heads=2, init_attn_head_dim=16),
    }
    return ml_collections.ConfigDict({**full, **overrides[_check(size)]})


def adapter_config(size: str) -> ml_collections.ConfigDict:
    """StyleAdapter fields for the named size; num_cross_layers is taken from the U-Net when built."""
    full = dict(image_dim=1280, context_dim=1024, style_heads=8, style_tokens=8, style_layers=3, scale_heads=8,
                scale_layers=2, scale_mid_dim=32)
    overrides = {
        "full": {},
        "medium": dict(image_dim=64, context_dim=64, style_heads=4, style_layers=2, scale_heads=4,
                       scale_layers=1),
        "tiny": dict(image_dim=64, context_dim=64, style_heads=2, style_tokens=4, style_layers=1, scale_heads=2,
                     scale_layers=1, scale_mid_dim=8),
    }
    return ml_collections.ConfigDict({**full, **overrides[_check(size)]})


def latent_shape(size: str) -> tuple[int, int, int]:
    """(frames, height, width) of the latent video a config trains and samples at."""
    return {"full": (16, 40, 64), "medium": (8, 16, 16), "tiny": (4, 8, 8)}[_check(size)]


def model_config(size: str) -> ml_collections.ConfigDict:
    """The `model` section: size name, sub-models, compute dtype, attention kernel, remat policy.

    `latent` is "vae" (the KL VAE's scaled latents, the reference) or "pixels" (no VAE: the U-Net
    diffuses the image itself, for the toy). `diffusion` is the DDPM schedule the model was trained
    with (the reference's scaled-linear betas unless a config says otherwise).
    """
    frames, height, width = latent_shape(size)
    encoders = "full" if size == "full" else "tiny"
    return ml_collections.ConfigDict(dict(
        size=size,
        unet=unet_config(size),
        adapter=adapter_config(size),
        text_encoder=text_encoder_config(encoders),
        image_encoder=image_encoder_config(encoders),
        vae=vae_config(encoders),
        latent="vae",
        diffusion=ml_collections.ConfigDict(dict(
            num_timesteps=NUM_TRAIN_TIMESTEPS, linear_start=LINEAR_START, linear_end=LINEAR_END)),
        frames=frames,
        latent_height=height,
        latent_width=width,
        # The full model computes in bfloat16 (parameters and optimizer state stay float32); small ones in float32.
        dtype="bfloat16" if size == "full" else "float32",
        attention="auto" if size == "full" else "xla",
        remat_policy="full" if size == "full" else "none",
    ))


def _check(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"model size {size!r}: expected one of {SIZES}")
    return size
