"""Import (and export) of the DINO ViT from the Hugging Face `ViTModel` state-dict layout.

`facebook/dino-vitb16` stores a bare `ViTModel` (keys `embeddings.*`, `encoder.layer.N.*`,
`layernorm.*`); task models such as `ViTForImageClassification` store it under `vit.`, which is
selected when present. The check is strict over the backbone keys. Ignored, and documented here: the
pooler (`pooler.dense.*`, unused by DINO features and randomly initialised by transformers when
absent), a classification head (`classifier.*`, outside `vit.`) and the `embeddings.mask_token`
of masked-image-modelling variants.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from stylecrafter_jax.checkpoints.key_maps import KeySpec, export_state_dict, flat_shapes, import_state_dict, \
    select_prefix
from stylecrafter_jax.models.dino import DinoViT

TASK_MODEL_PREFIX = "vit."
_IGNORE = ("pooler.", "embeddings.mask_token")
_INDEXED = re.compile(r"^layer_(\d+)$")


def hf_vit_key(path: str, ndim: int) -> KeySpec:
    """transformers ViTModel key of a leaf: `encoder/layer_3/attention/attention/query/kernel` →
    `encoder.layer.3.attention.attention.query.weight` (Linear: transposed; patch projection: conv)."""
    *modules, leaf = path.split("/")
    name = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    transform = ("conv" if ndim == 4 else "dense") if leaf == "kernel" else "as-is"
    return KeySpec(".".join([*(_INDEXED.sub(r"layer.\1", m) for m in modules), name]), transform)


def dino_param_shapes(model: DinoViT) -> dict[str, tuple[int, ...]]:
    """{path: shape} of the model, from jax.eval_shape (nothing allocated)."""
    pixels = jax.ShapeDtypeStruct((1, model.image_size, model.image_size, 3), jnp.float32)
    return flat_shapes(jax.eval_shape(model.init, jax.random.key(0), pixels)["params"])


def dino_params_from_hf(state_dict: Mapping[str, Any], model: DinoViT) -> dict:
    """Parameters of `model` from a ViTModel (or `vit.`-prefixed task-model) state dict of arrays."""
    prefixed = any(key.startswith(TASK_MODEL_PREFIX) for key in state_dict)
    backbone = select_prefix(state_dict, TASK_MODEL_PREFIX) if prefixed else dict(state_dict)
    where = f"keys under {TASK_MODEL_PREFIX!r}" if prefixed else "top-level keys"
    return import_state_dict(backbone, dino_param_shapes(model), hf_vit_key,
                             source=f"Hugging Face ViTModel ({where})", ignore=_IGNORE)


def dino_params_to_hf(params: Any) -> dict[str, np.ndarray]:
    """The ViTModel state dict (numpy, no pooler) of DINO parameters."""
    return export_state_dict(params, hf_vit_key)
