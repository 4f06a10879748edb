"""Tiny random PyTorch reference encoders (transformers CLIP, diffusers AutoencoderKL) sized like configs/encoders "tiny".

Every parameter is drawn at random (weights and tables ~ N(0, 1/fan_in), norm scales ~ 1 + N(0, 0.1²), other
vectors ~ N(0, 0.1²)), so no mapping error can hide behind a zero bias or a unit scale.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stylecrafter_jax.models.sizes import image_encoder_config, text_encoder_config, vae_config


def coarse_half(array: np.ndarray) -> np.ndarray:
    """float16 with the low 8 of its 10 mantissa bits cleared (3 significant bits), which compresses to under a byte."""
    return np.asarray(array.astype(np.float16).view(np.uint16) & np.uint16(0xFF00)).view(np.float16)


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Overwrite every parameter of `module` in place with seeded random values; returns it in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if p.ndim >= 2:
                p.copy_(noise / math.sqrt(math.prod(p.shape[1:])))
            elif ("norm" in name or "layrnorm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return module.eval()


def numpy_state_dict(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """The module's state dict as numpy arrays."""
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def hf_text_model(seed: int = 0):
    """transformers CLIPTextModelWithProjection configured like the tiny OpenCLIP text tower (exact GELU, eps 1e-5)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    c = text_encoder_config("tiny")
    config = CLIPTextConfig(vocab_size=c.vocab_size, hidden_size=c.width, intermediate_size=int(c.width * c.mlp_ratio),
                            num_hidden_layers=c.layers, num_attention_heads=c.heads,
                            max_position_embeddings=c.context_length, hidden_act="gelu", layer_norm_eps=1e-5,
                            projection_dim=c.embed_dim, bos_token_id=49406, eos_token_id=49407, pad_token_id=0,
                            attn_implementation="eager")
    return randomize_(CLIPTextModelWithProjection(config), seed)


def hf_vision_model(seed: int = 1):
    """transformers CLIPVisionModelWithProjection configured like the tiny OpenCLIP vision tower."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    c = image_encoder_config("tiny")
    config = CLIPVisionConfig(hidden_size=c.width, intermediate_size=int(c.width * c.mlp_ratio),
                              num_hidden_layers=c.layers, num_attention_heads=c.heads, image_size=c.image_size,
                              patch_size=c.patch_size, hidden_act="gelu", layer_norm_eps=1e-5,
                              projection_dim=c.embed_dim, attn_implementation="eager")
    return randomize_(CLIPVisionModelWithProjection(config), seed)


def diffusers_vae(seed: int = 2):
    """diffusers AutoencoderKL configured like the tiny VAE (4 levels, f8)."""
    from diffusers import AutoencoderKL

    c = vae_config("tiny")
    levels = len(c.ch_mult)
    model = AutoencoderKL(in_channels=c.in_channels, out_channels=c.out_ch,
                          down_block_types=("DownEncoderBlock2D",) * levels,
                          up_block_types=("UpDecoderBlock2D",) * levels,
                          block_out_channels=tuple(c.ch * m for m in c.ch_mult), layers_per_block=c.num_res_blocks,
                          latent_channels=c.z_channels, norm_num_groups=32)
    return randomize_(model, seed)


def open_clip_layout(hf_state_dict: dict[str, np.ndarray], tower: str) -> dict[str, np.ndarray]:
    """The open_clip state dict of a transformers CLIP{Text,Vision}ModelWithProjection one (q/k/v packed)."""
    root = {"text": "text_model.", "vision": "vision_model."}[tower]
    top = {
        "text": {"embeddings.token_embedding.weight": "token_embedding.weight",
                 "embeddings.position_embedding.weight": "positional_embedding",
                 "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"},
        "vision": {"embeddings.patch_embedding.weight": "conv1.weight",
                   "embeddings.class_embedding": "class_embedding",
                   "embeddings.position_embedding.weight": "positional_embedding",
                   "pre_layrnorm.weight": "ln_pre.weight", "pre_layrnorm.bias": "ln_pre.bias",
                   "post_layernorm.weight": "ln_post.weight", "post_layernorm.bias": "ln_post.bias"},
    }[tower]
    block = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    out = {}
    layers = 1 + max(int(k.split(".")[3]) for k in hf_state_dict if ".encoder.layers." in k)
    for i in range(layers):
        hf = f"{root}encoder.layers.{i}."
        oc = f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{oc}attn.in_proj_{kind}"] = np.concatenate(
                [hf_state_dict[f"{hf}self_attn.{p}_proj.{kind}"] for p in "qkv"], axis=0)
            for hf_name, oc_name in block.items():
                out[f"{oc}{oc_name}.{kind}"] = hf_state_dict[f"{hf}{hf_name}.{kind}"]
    for hf_name, oc_name in top.items():
        out[oc_name] = hf_state_dict[root + hf_name]
    if tower == "text":
        out["text_projection"] = hf_state_dict["text_projection.weight"].T.copy()
        out["logit_scale"] = np.array(math.log(1 / 0.07), np.float32)
    else:
        out["proj"] = hf_state_dict["visual_projection.weight"].T.copy()
    return out
