"""The metric encoders (OpenCLIP image and text towers, DINO ViT) with weights, as batched jitted calls.

Images of any size go through `preprocess.center_crop` at each encoder's input size, then are split into
chunks of `batch_size` (the last one zero-padded, so every call has one shape and one compilation).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylecrafter_jax.models.sizes import image_encoder_config, text_encoder_config
from stylecrafter_jax.checkpoints.clip_import import (text_params_from_hf, text_params_from_open_clip,
                                                      vision_params_from_hf, vision_params_from_open_clip)
from stylecrafter_jax.checkpoints.dino_import import dino_params_from_hf
from stylecrafter_jax.checkpoints.torch_files import read_state_dict
from stylecrafter_jax.conditioning.encoders import encode_style_images, encode_text
from stylecrafter_jax.conditioning.tokenizer import load_tokenizer
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.evaluation.preprocess import NORMALIZATION, center_crops
from stylecrafter_jax.models.clip import OpenCLIPTextTower, OpenCLIPVisionTower
from stylecrafter_jax.models.dino import DinoViT

CLIP_FORMATS = ("open_clip", "hf")
CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")
DINO_FILES = ("model.safetensors", "pytorch_model.bin")


@functools.partial(jax.jit, static_argnums=0)
def _dino_cls(model: DinoViT, params: dict, pixels: jax.Array) -> jax.Array:
    return model.apply({"params": params}, pixels)[0]


def resolve_checkpoint(path: str, candidates: Sequence[str]) -> str:
    """`path` itself if it is a file, else the first of `candidates` inside the directory `path`."""
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        for name in candidates:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise ConfigError(f"checkpoint directory {path!r} holds none of {list(candidates)}")
    raise ConfigError(f"checkpoint {path!r} does not exist")


def _normalized(crops: np.ndarray, kind: str) -> np.ndarray:
    mean, std = (np.asarray(v, np.float32) for v in NORMALIZATION[kind])
    return (crops.astype(np.float32) / np.float32(255.0) - mean) / std


@dataclasses.dataclass(frozen=True)
class MetricEncoders:
    """CLIP image/text and DINO towers with their parameters, the tokenizer and the batch size."""

    clip_vision: OpenCLIPVisionTower
    clip_text: OpenCLIPTextTower
    dino: DinoViT
    params: dict[str, Any]
    tokenizer: Callable[[Sequence[str]], np.ndarray]
    batch_size: int

    def _chunks(self, inputs: np.ndarray, encode: Callable[[np.ndarray], jax.Array]) -> np.ndarray:
        outputs = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start:start + self.batch_size]
            padded = np.concatenate([chunk, np.zeros((self.batch_size - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            outputs.append(np.asarray(encode(padded))[:len(chunk)])
        return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)

    def embed_images(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """{"clip": (n, clip embed_dim), "dino": (n, hidden)} float32 of (h, w, 3) uint8 RGB images."""
        clip = _normalized(center_crops(images, self.clip_vision.image_size), "clip")
        dino = _normalized(center_crops(images, self.dino.image_size), "imagenet")
        return {
            "clip": self._chunks(clip, lambda x: encode_style_images(self.clip_vision, self.params["clip_vision"],
                                                                     x)[1]),
            "dino": self._chunks(dino, lambda x: _dino_cls(self.dino, self.params["dino"], x)),
        }

    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, clip embed_dim) float32 projected text embeddings of the prompts."""
        tokens = self.tokenizer(list(prompts))
        return self._chunks(tokens, lambda t: encode_text(self.clip_text, self.params["clip_text"], t)[1])


def clip_params(state_dict: dict[str, np.ndarray], fmt: str, text: OpenCLIPTextTower,
                vision: OpenCLIPVisionTower) -> dict[str, Any]:
    """{"clip_text", "clip_vision"} parameters of a two-tower CLIP state dict in `fmt` ("open_clip" or "hf")."""
    if fmt == "open_clip":
        return {"clip_text": text_params_from_open_clip(state_dict, text, prefix=""),
                "clip_vision": vision_params_from_open_clip(state_dict, vision)}
    if fmt == "hf":
        return {"clip_text": text_params_from_hf(state_dict, text),
                "clip_vision": vision_params_from_hf(state_dict, vision)}
    raise ConfigError(f"evaluation clip.format {fmt!r}: expected one of {CLIP_FORMATS}")


def build_metric_encoders(config: ml_collections.ConfigDict) -> MetricEncoders:
    """The metric encoders of an evaluation config, with weights read from its checkpoint paths.

    `clip.checkpoint`: open_clip's `open_clip_pytorch_model.bin` / `open_clip_model.safetensors` of
    laion/CLIP-ViT-H-14-laion2B-s32B-b79K (`clip.format` "open_clip") or a transformers CLIPModel file
    ("hf"), or a folder holding one; `dino.checkpoint`: the `facebook/dino-vitb16` model file or folder.
    """
    text = OpenCLIPTextTower(**text_encoder_config(config.clip.size))
    vision = OpenCLIPVisionTower(**image_encoder_config(config.clip.size))
    dino = DinoViT(**config.dino.model)
    for name, path in (("clip", config.clip.checkpoint), ("dino", config.dino.checkpoint)):
        if not path:
            raise ConfigError(f"evaluation {name}.checkpoint is empty: set --config.{name}.checkpoint to the "
                              f"metric encoder's weights (see stylecrafter_jax/evaluation/defaults.py)")
    params = clip_params(read_state_dict(resolve_checkpoint(config.clip.checkpoint, CLIP_FILES)), config.clip.format,
                         text, vision)
    params["dino"] = dino_params_from_hf(read_state_dict(resolve_checkpoint(config.dino.checkpoint, DINO_FILES)), dino)
    params = jax.tree.map(jnp.asarray, params)
    tokenizer = load_tokenizer(config.clip.tokenizer or None, text.context_length)
    return MetricEncoders(vision, text, dino, params, tokenizer, config.batch_size)
