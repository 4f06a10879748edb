"""Configs of the frozen encoders: the KL VAE and the OpenCLIP ViT-H/14 text and vision towers.

Keys equal the architecture fields of the module each builds (`AutoencoderKL`, `OpenCLIPTextTower`,
`OpenCLIPVisionTower`), so `AutoencoderKL(**vae_config("full"))` works; compute dtype, attention kernel
and remat policy are the modules' other fields, set by whoever builds them.
"full" is the reference (83,653,863 / 354,032,641 / 632,076,800 parameters). "tiny" is for tests and the
toy model: a 4-level (f8) VAE at width 32, towers of width 64 with 2 blocks, text context 77 over the real
49,408-token vocabulary, vision input 28 px in 14-px patches (5 tokens).
"""

from __future__ import annotations

import ml_collections

SIZES = ("full", "tiny")


def vae_config(size: str) -> ml_collections.ConfigDict:
    """AutoencoderKL fields for the named size."""
    full = dict(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4, embed_dim=4, in_channels=3, out_ch=3)
    tiny = dict(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)
    return ml_collections.ConfigDict({**full, **(tiny if _check(size) == "tiny" else {})})


def text_encoder_config(size: str) -> ml_collections.ConfigDict:
    """OpenCLIPTextTower fields for the named size."""
    full = dict(vocab_size=49408, context_length=77, width=1024, layers=24, heads=16, mlp_ratio=4.0, embed_dim=1024)
    tiny = dict(width=64, layers=2, heads=4, embed_dim=64)
    return ml_collections.ConfigDict({**full, **(tiny if _check(size) == "tiny" else {})})


def image_encoder_config(size: str) -> ml_collections.ConfigDict:
    """OpenCLIPVisionTower fields for the named size."""
    full = dict(image_size=224, patch_size=14, width=1280, layers=32, heads=16, mlp_ratio=4.0, embed_dim=1024,
                round_to_fp16=True)
    tiny = dict(image_size=28, width=64, layers=2, heads=4, embed_dim=64)
    return ml_collections.ConfigDict({**full, **(tiny if _check(size) == "tiny" else {})})


def _check(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"encoder size {size!r}: expected one of {SIZES}")
    return size
