"""Test helpers: tiny random metric-encoder checkpoints (transformers layouts), eval sets and sample folders."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

from configs.evaluation import get_config
from stylecrafter_jax.models.sizes import dino_config
from tests.torch_references import hf_text_model, hf_vision_model, numpy_state_dict, randomize_


def tiny_dino_model(seed: int = 3):
    """A random transformers ViTModel (no pooler) shaped like configs/evaluation.py's tiny DINO."""
    from transformers import ViTConfig, ViTModel

    c = dino_config("tiny")
    config = ViTConfig(image_size=c.image_size, patch_size=c.patch_size, hidden_size=c.hidden_size,
                       num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
                       intermediate_size=c.intermediate_size, layer_norm_eps=c.layer_norm_eps, hidden_act="gelu")
    return randomize_(ViTModel(config, add_pooling_layer=False), seed)


def write_metric_weights(folder: str) -> dict:
    """Write clip.safetensors (a CLIPModel-layout text + vision state dict) and dino.safetensors into `folder`.

    Returns the paths and the torch models they came from.
    """
    text, vision, dino = hf_text_model(), hf_vision_model(), tiny_dino_model()
    os.makedirs(folder, exist_ok=True)
    clip_path, dino_path = os.path.join(folder, "clip.safetensors"), os.path.join(folder, "dino.safetensors")
    save_file({**numpy_state_dict(text), **numpy_state_dict(vision)}, clip_path)
    save_file(numpy_state_dict(dino), dino_path)
    return {"clip": clip_path, "dino": dino_path, "text_model": text, "vision_model": vision, "dino_model": dino}


def tiny_config(weights: dict, arg: str = "video,tiny"):
    """The tiny evaluation config pointed at the written weights (transformers CLIP layout)."""
    config = get_config(arg)
    config.clip.checkpoint, config.clip.format, config.dino.checkpoint = weights["clip"], "hf", weights["dino"]
    return config


def random_image(seed: int, h: int, w: int) -> np.ndarray:
    """uint8 (h, w, 3) smooth random colours."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def moving_video(seed: int, frames: int, h: int = 40, w: int = 48, step: int = 1) -> np.ndarray:
    """uint8 (frames, h, w, 3): a random texture panning `step` pixels right per frame."""
    big = random_image(seed, h, w + step * frames)
    return np.stack([big[:, step * (frames - t):step * (frames - t) + w] for t in range(frames)])


# (h, w) whose centre crops at 28 and 32 px start at whole pixels, where transformers' floor and torchvision's
# rounding of the offset agree: reference computations with CLIPImageProcessor then match exactly
STYLE_SHAPES = ((30, 45), (31, 74), (45, 30), (50, 50), (62, 31), (32, 64))


def write_eval_set(root: str, entries: list[tuple[str, str | list[str]]], name: str = "eval.json") -> str:
    """Write the style images an eval JSON names (random, assorted sizes, png/jpg) and the JSON; returns its path."""
    for i, path in enumerate(sorted({p for _, s in entries for p in ([s] if isinstance(s, str) else s)})):
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        Image.fromarray(random_image(100 + i, *STYLE_SHAPES[i % len(STYLE_SHAPES)])).save(full)
    json_path = os.path.join(root, name)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump([{"prompt": p, "style_path": s} for p, s in entries], f)
    return json_path
