"""Import (and export) of the OpenCLIP towers from open_clip and Hugging Face state dicts.

Layouts (state dicts of numpy arrays; `safetensors.numpy.load_file` reads HF files without torch):
- open_clip: text keys `token_embedding.weight`, `positional_embedding`, `transformer.resblocks.N.*`
  (packed `attn.in_proj_weight`), `ln_final.*`, `text_projection`, `logit_scale`, stored under
  `cond_stage_model.model.` in the VideoCrafter checkpoint and at top level in
  `open_clip_pytorch_model.bin`, whose vision tower is under `visual.` (`conv1.weight`,
  `class_embedding`, `positional_embedding`, `ln_pre.*`, `transformer.*`, `ln_post.*`, `proj`).
- Hugging Face transformers: `CLIPTextModelWithProjection` (`text_model.*`, `text_projection.weight`),
  `CLIPVisionModelWithProjection` (`vision_model.*`, `visual_projection.weight`), or a whole `CLIPModel`.

Keys under the prefix are checked strictly. Ignored, and documented here: the other tower of a
two-tower file (`visual.*` / `vision_model.*`, `visual_projection.*`; `text_model.*`,
`text_projection.*` and `logit_scale` for the vision tower), the `attn_mask` buffer some open_clip
versions save, and the `position_ids` buffer older transformers versions save. A Hugging Face text
state dict without `logit_scale` (the single-tower classes have none) gets open_clip's initial
value ln(1/0.07); the forward pass never uses it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from stylecrafter_jax.checkpoints.key_maps import (add_prefix, export_state_dict, flat_shapes, import_state_dict,
                                                   select_prefix)
from stylecrafter_jax.checkpoints.official_keys import KeySpec
from stylecrafter_jax.models.clip import OpenCLIPTextTower, OpenCLIPVisionTower

VIDEOCRAFTER_TEXT_PREFIX = "cond_stage_model.model."
OPEN_CLIP_VISION_PREFIX = "visual."
_QKV = ("query", "key", "value")
_OPEN_CLIP_TEXT_IGNORE = ("visual.", "attn_mask")
_HF_TEXT_IGNORE = ("vision_model.", "visual_projection.", "text_model.embeddings.position_ids")
_HF_VISION_IGNORE = ("text_model.", "text_projection.", "logit_scale", "vision_model.embeddings.position_ids")
_HF_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn/query": "self_attn.q_proj",
             "attn/key": "self_attn.k_proj", "attn/value": "self_attn.v_proj", "attn/out_proj": "self_attn.out_proj",
             "mlp/c_fc": "mlp.fc1", "mlp/c_proj": "mlp.fc2"}
_HF_TEXT_TOP = {"token_embedding/embedding": ("text_model.embeddings.token_embedding.weight", "as-is"),
                "positional_embedding": ("text_model.embeddings.position_embedding.weight", "as-is"),
                "ln_final/scale": ("text_model.final_layer_norm.weight", "as-is"),
                "ln_final/bias": ("text_model.final_layer_norm.bias", "as-is"),
                "text_projection": ("text_projection.weight", "dense"),
                "logit_scale": ("logit_scale", "as-is")}
_HF_VISION_TOP = {"conv1/kernel": ("vision_model.embeddings.patch_embedding.weight", "conv"),
                  "class_embedding": ("vision_model.embeddings.class_embedding", "as-is"),
                  "positional_embedding": ("vision_model.embeddings.position_embedding.weight", "as-is"),
                  "ln_pre/scale": ("vision_model.pre_layrnorm.weight", "as-is"),
                  "ln_pre/bias": ("vision_model.pre_layrnorm.bias", "as-is"),
                  "ln_post/scale": ("vision_model.post_layernorm.weight", "as-is"),
                  "ln_post/bias": ("vision_model.post_layernorm.bias", "as-is"),
                  "proj": ("visual_projection.weight", "dense")}


def open_clip_key(path: str, ndim: int) -> KeySpec:
    """open_clip key of a tower leaf: `transformer/resblocks_3/attn/key/kernel` → row block 1 of
    `transformer.resblocks.3.attn.in_proj_weight`; `token_embedding/embedding` → `token_embedding.weight`."""
    *modules, leaf = path.split("/")
    if modules and modules[-1] in _QKV:
        base = ".".join(_open_clip_name(m) for m in modules[:-1])
        if leaf == "kernel":
            return KeySpec(f"{base}.in_proj_weight", "dense", _QKV.index(modules[-1]))
        return KeySpec(f"{base}.in_proj_bias", "as-is", _QKV.index(modules[-1]))
    name = {"kernel": "weight", "scale": "weight", "embedding": "weight"}.get(leaf, leaf)
    transform = ("conv" if ndim == 4 else "dense") if leaf == "kernel" else "as-is"
    return KeySpec(".".join([*(_open_clip_name(m) for m in modules), name]), transform)


def _open_clip_name(module: str) -> str:
    prefix, _, index = module.rpartition("_")
    return f"{prefix}.{index}" if prefix == "resblocks" else module


def _hf_key(path: str, ndim: int, root: str, top: Mapping[str, tuple[str, str]]) -> KeySpec:
    if path in top:
        return KeySpec(*top[path])
    parts = path.split("/")
    if parts[0] != "transformer" or not parts[1].startswith("resblocks_"):
        raise KeyError(f"no Hugging Face key for CLIP parameter {path!r}")
    layer = parts[1].removeprefix("resblocks_")
    name = {"kernel": "weight", "scale": "weight"}.get(parts[-1], parts[-1])
    return KeySpec(f"{root}.encoder.layers.{layer}.{_HF_BLOCK['/'.join(parts[2:-1])]}.{name}",
                   "dense" if parts[-1] == "kernel" else "as-is")


def hf_text_key(path: str, ndim: int) -> KeySpec:
    """transformers `CLIPTextModelWithProjection` key of a text-tower leaf."""
    return _hf_key(path, ndim, "text_model", _HF_TEXT_TOP)


def hf_vision_key(path: str, ndim: int) -> KeySpec:
    """transformers `CLIPVisionModelWithProjection` key of a vision-tower leaf."""
    return _hf_key(path, ndim, "vision_model", _HF_VISION_TOP)


def text_param_shapes(tower: OpenCLIPTextTower) -> dict[str, tuple[int, ...]]:
    """{path: shape} of the text tower, from jax.eval_shape (nothing allocated)."""
    tokens = jax.ShapeDtypeStruct((1, tower.context_length), jnp.int32)
    return flat_shapes(jax.eval_shape(tower.init, jax.random.key(0), tokens)["params"])


def vision_param_shapes(tower: OpenCLIPVisionTower) -> dict[str, tuple[int, ...]]:
    """{path: shape} of the vision tower, from jax.eval_shape (nothing allocated)."""
    pixels = jax.ShapeDtypeStruct((1, tower.image_size, tower.image_size, 3), jnp.float32)
    return flat_shapes(jax.eval_shape(tower.init, jax.random.key(0), pixels)["params"])


def text_params_from_open_clip(state_dict: Mapping[str, Any], tower: OpenCLIPTextTower,
                               prefix: str = VIDEOCRAFTER_TEXT_PREFIX) -> dict:
    """Text-tower parameters from the keys under `prefix` (use "" for open_clip_pytorch_model.bin)."""
    return import_state_dict(select_prefix(state_dict, prefix), text_param_shapes(tower), open_clip_key,
                             source=f"open_clip text tower (keys under {prefix!r})", ignore=_OPEN_CLIP_TEXT_IGNORE)


def vision_params_from_open_clip(state_dict: Mapping[str, Any], tower: OpenCLIPVisionTower,
                                 prefix: str = OPEN_CLIP_VISION_PREFIX) -> dict:
    """Vision-tower parameters from the keys under `prefix` of an open_clip state dict."""
    return import_state_dict(select_prefix(state_dict, prefix), vision_param_shapes(tower), open_clip_key,
                             source=f"open_clip vision tower (keys under {prefix!r})")


def text_params_from_hf(state_dict: Mapping[str, Any], tower: OpenCLIPTextTower) -> dict:
    """Text-tower parameters from a transformers CLIPTextModelWithProjection (or CLIPModel) state dict."""
    with_scale = {"logit_scale": np.float32(math.log(1 / 0.07)), **state_dict}
    return import_state_dict(with_scale, text_param_shapes(tower), hf_text_key,
                             source="Hugging Face CLIP text model", ignore=_HF_TEXT_IGNORE)


def vision_params_from_hf(state_dict: Mapping[str, Any], tower: OpenCLIPVisionTower) -> dict:
    """Vision-tower parameters from a transformers CLIPVisionModelWithProjection (or CLIPModel) state dict."""
    return import_state_dict(state_dict, vision_param_shapes(tower), hf_vision_key,
                             source="Hugging Face CLIP vision model", ignore=_HF_VISION_IGNORE)


def text_params_to_open_clip(params: Any, prefix: str = VIDEOCRAFTER_TEXT_PREFIX) -> dict[str, np.ndarray]:
    """The open_clip state dict (under `prefix`) of text-tower parameters."""
    return add_prefix(export_state_dict(params, open_clip_key), prefix)


def vision_params_to_open_clip(params: Any, prefix: str = OPEN_CLIP_VISION_PREFIX) -> dict[str, np.ndarray]:
    """The open_clip state dict (under `prefix`) of vision-tower parameters."""
    return add_prefix(export_state_dict(params, open_clip_key), prefix)
