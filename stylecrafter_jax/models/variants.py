"""Size tables of the image-to-video models: VideoCrafter1 I2V-512 and DynamiCrafter 256 / 512 / 1024 / 512_interp.

Each table is plain data: the `UNet3D` fields, the `Resampler` fields, the overrides of the CLIP
vision tower and the latent (frames, height, width), at the reference size ("full") and at the small
sizes of tests and benchmarks ("medium", "tiny"; widths as StyleCrafter's, one projector token set
per latent frame). Configs build their `model` section from these.
"""

from __future__ import annotations

from typing import Any

from stylecrafter_jax.errors import ConfigError

VARIANTS = ("videocrafter_i2v", "dynamicrafter_256", "dynamicrafter_512", "dynamicrafter_1024",
            "dynamicrafter_512_interp")
SIZES = ("full", "medium", "tiny")

# VideoCrafter1 I2V-512: the VideoCrafter2 U-Net (temporal convs, fps embedding, no relative positions) + image K/V.
_VIDEOCRAFTER_I2V_UNET = dict(
    in_channels=4, out_channels=4, model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
    attention_resolutions=(4, 2, 1), num_head_channels=64, context_dim=1024, text_length=77,
    temporal_max_distance=16, addition_attention=True, init_attn_heads=8, init_attn_head_dim=64, norm_groups=32,
    style_adapter=False, style_attention_scaled=True, temporal_conv=True, relative_position=False,
    concat_channels=0, fps_condition=True, fps_zero_init=False, default_fps=16, image_cross_attention=True,
    image_scale_learnable=False, image_scale=1.0, image_tokens_per_frame=16)
# DynamiCrafter: 8 input channels (visual detail guidance), a zero-initialised fps embedding, default_fs of its
# inference config; the 256 model takes a frame stride and learns one image-attention weight per layer.
_DYNAMICRAFTER_UNET = {
    "dynamicrafter_256": dict(default_fps=3, image_scale_learnable=True),
    "dynamicrafter_512": dict(default_fps=24),
    "dynamicrafter_1024": dict(default_fps=10),
    "dynamicrafter_512_interp": dict(default_fps=24),
}
_SMALL_UNET = {
    "medium": dict(model_channels=64, channel_mult=(1, 2, 4), num_head_channels=32, context_dim=64,
                   init_attn_heads=4, init_attn_head_dim=32),
    "tiny": dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1,),
                 num_head_channels=16, context_dim=64, init_attn_heads=2, init_attn_head_dim=16),
}
_PROJECTOR = dict(dim=1024, depth=4, dim_head=64, heads=12, num_queries=16, embedding_dim=1280, output_dim=1024,
                  ff_mult=4, video_length=1)
_SMALL_PROJECTOR = {
    "medium": dict(dim=64, depth=2, dim_head=32, heads=2, num_queries=8, embedding_dim=64, output_dim=64),
    "tiny": dict(dim=32, depth=1, dim_head=16, heads=2, num_queries=4, embedding_dim=64, output_dim=64),
}
_LATENT = {"videocrafter_i2v": (16, 40, 64), "dynamicrafter_256": (16, 32, 32), "dynamicrafter_512": (16, 40, 64),
           "dynamicrafter_1024": (16, 72, 128), "dynamicrafter_512_interp": (16, 40, 64)}
_SMALL_LATENT = {"medium": (8, 16, 16), "tiny": (4, 8, 8)}
_DIFFUSION = {
    "videocrafter_i2v": dict(prediction="eps", zero_terminal_snr=False, rescale="use_scale", rescale_base=0.7),
    "dynamicrafter_256": dict(prediction="eps", zero_terminal_snr=False, rescale="none"),
    "dynamicrafter_512": dict(prediction="v", zero_terminal_snr=True, rescale="dynamic", rescale_base=0.7),
    "dynamicrafter_1024": dict(prediction="v", zero_terminal_snr=True, rescale="dynamic", rescale_base=0.3),
    "dynamicrafter_512_interp": dict(prediction="v", zero_terminal_snr=True, rescale="dynamic", rescale_base=0.7),
}
IMAGE_ENCODER_OVERRIDES = dict(token_output="raw", round_to_fp16=False)
"""`FrozenOpenCLIPImageEmbedderV2`: all 257 last-block tokens, float32 (no ln_post, projection or fp16)."""


def _check(variant: str, size: str) -> None:
    if variant not in VARIANTS:
        raise ConfigError(f"image-to-video variant {variant!r}: expected one of {VARIANTS}")
    if size not in SIZES:
        raise ConfigError(f"model size {size!r}: expected one of {SIZES}")


def is_dynamicrafter(variant: str) -> bool:
    """Whether the variant is a DynamiCrafter model (VDG input, per-frame image tokens)."""
    return variant.startswith("dynamicrafter")


def latent_shape(variant: str, size: str) -> tuple[int, int, int]:
    """(frames, height, width) of the latent video the variant samples at."""
    _check(variant, size)
    return _LATENT[variant] if size == "full" else _SMALL_LATENT[size]


def unet_fields(variant: str, size: str) -> dict[str, Any]:
    """`UNet3D` fields of the variant at the size."""
    _check(variant, size)
    fields = {**_VIDEOCRAFTER_I2V_UNET, **_SMALL_UNET.get(size, {})}
    if is_dynamicrafter(variant):
        fields.update(in_channels=8, concat_channels=4, fps_zero_init=True, **_DYNAMICRAFTER_UNET[variant])
    fields["image_tokens_per_frame"] = projector_fields(variant, size)["num_queries"]
    return fields


def projector_fields(variant: str, size: str) -> dict[str, Any]:
    """`Resampler` fields of the variant at the size (DynamiCrafter: one query set per latent frame)."""
    _check(variant, size)
    fields = {**_PROJECTOR, **_SMALL_PROJECTOR.get(size, {})}
    if is_dynamicrafter(variant):
        fields["video_length"] = latent_shape(variant, size)[0]
    return fields


def diffusion_fields(variant: str) -> dict[str, Any]:
    """The `model.diffusion` settings of the variant: prediction, zero-terminal SNR and latent rescale."""
    _check(variant, "full")
    return dict(_DIFFUSION[variant])
