"""Size tables of the StyleCrafter model and its frozen encoders: the reference size and small ones for tests.

Keys of each sub-dict equal the fields of the module they build (`UNet3D`, `StyleAdapter`, `AutoencoderKL`,
`OpenCLIPTextTower`, `OpenCLIPVisionTower`, `DinoViT`), so `AutoencoderKL(**vae_config("full"))` works;
compute dtype, attention kernel and remat policy are the modules' other fields, set by whoever builds them.
Model sizes: "full" (320x512x16 videos), "medium" and "tiny". Encoder sizes: "full" (the reference) and
"tiny" for tests and the toy: a 4-level (f8) VAE at width 32, towers of width 64 with 2 blocks, text context
77 over the real 49,408-token vocabulary, vision input 28 px in 14-px patches (5 tokens), a 2-block DINO.
The image-to-video variants' tables are in `stylecrafter_jax.models.variants`.
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.diffusion.schedule import LINEAR_END, LINEAR_START, NUM_TRAIN_TIMESTEPS
from stylecrafter_jax.errors import ConfigError

SIZES = ("full", "medium", "tiny")
ENCODER_SIZES = ("full", "tiny")


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
        "tiny": dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1,),
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


def vae_config(size: str) -> ml_collections.ConfigDict:
    """AutoencoderKL fields for the named size."""
    full = dict(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4, embed_dim=4, in_channels=3, out_ch=3)
    tiny = dict(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)
    return ml_collections.ConfigDict({**full, **(tiny if _check_encoder(size) == "tiny" else {})})


def text_encoder_config(size: str) -> ml_collections.ConfigDict:
    """OpenCLIPTextTower fields for the named size."""
    full = dict(vocab_size=49408, context_length=77, width=1024, layers=24, heads=16, mlp_ratio=4.0, embed_dim=1024)
    tiny = dict(width=64, layers=2, heads=4, embed_dim=64)
    return ml_collections.ConfigDict({**full, **(tiny if _check_encoder(size) == "tiny" else {})})


def image_encoder_config(size: str) -> ml_collections.ConfigDict:
    """OpenCLIPVisionTower fields for the named size."""
    full = dict(image_size=224, patch_size=14, width=1280, layers=32, heads=16, mlp_ratio=4.0, embed_dim=1024,
                round_to_fp16=True)
    tiny = dict(image_size=28, width=64, layers=2, heads=4, embed_dim=64)
    return ml_collections.ConfigDict({**full, **(tiny if _check_encoder(size) == "tiny" else {})})


def dino_config(size: str) -> ml_collections.ConfigDict:
    """DinoViT fields: "full" is ViT-B/16 at 224 (facebook/dino-vitb16), "tiny" a 2-block width-32 ViT at 32 px."""
    full = dict(image_size=224, patch_size=16, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                layer_norm_eps=1e-12)
    tiny = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    return ml_collections.ConfigDict({**full, **(tiny if _check_encoder(size, "DINO") == "tiny" else {})})



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
        raise ConfigError(f"model size {size!r}: expected one of {SIZES}")
    return size


def _check_encoder(size: str, encoder: str = "encoder") -> str:
    if size not in ENCODER_SIZES:
        raise ConfigError(f"{encoder} size {size!r}: expected one of {ENCODER_SIZES}")
    return size
