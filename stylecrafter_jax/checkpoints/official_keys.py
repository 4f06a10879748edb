"""The official PyTorch key, and the transform, of every U-Net, style-adapter and image-to-video parameter.

Flax paths mirror the official module tree: `input_blocks_1/1/transformer_blocks_0/attn2/to_k/kernel`
is `model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight`. The style
K/V and LayerNorm under `.../attn2/processor/` are stored in `adapter_v1.pth` as
`kv_attn_layers.<processor path with '.' -> '_'>.*`; the open_clip-style q/k/v of the adapter's
transformers are the three row blocks of a packed `in_proj_weight` / `in_proj_bias`.

The image-to-video checkpoints (VideoCrafter1 I2V, DynamiCrafter) use the same U-Net keys (plus
`temopral_conv.*` Conv3d kernels, `fps_embedding.*`, `attn2.to_{k,v}_ip.*`, DynamiCrafter 256's
`attn2.alpha`); the projector is under `image_proj_model.` and the CLIP vision tower under
`embedder.model.visual.`, beside open_clip's unused text leftovers (`IMAGE_EMBEDDER_UNUSED`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

UNET_PREFIX = "model.diffusion_model."
PROJECTOR_PREFIX = "image_proj_model."
IMAGE_EMBEDDER_PREFIX = "embedder.model."
IMAGE_EMBEDDER_UNUSED = tuple(IMAGE_EMBEDDER_PREFIX + key for key in (
    "token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias", "text_projection",
    "logit_scale"))
"""The text-tower tensors `FrozenOpenCLIPImageEmbedderV2` keeps in the checkpoint but never uses."""
QKV = ("query", "key", "value")
_INDEXED = re.compile(r"^(?!ln_)(.+)_(\d+)$")


class KeySpec(NamedTuple):
    """Where one Flax leaf lives in a torch state dict: key, transform and, if packed, its row block."""

    torch_key: str
    transform: str
    part: int | None = None


def module_path_to_torch(path: str) -> str:
    """`input_blocks_1/1/transformer_blocks_0/to_out_0` -> `input_blocks.1.1.transformer_blocks.0.to_out.0`."""
    return ".".join(_INDEXED.sub(r"\1.\2", part) for part in path.split("/"))


def _leaf_spec(module_path: str, leaf: str, ndim: int) -> KeySpec:
    """Torch key and transform of a leaf given its Flax module path, leaf name and rank."""
    parts = module_path.split("/")
    if parts[-1] in QKV:
        packed = module_path_to_torch("/".join(parts[:-1]))
        suffix = "in_proj_weight" if leaf == "kernel" else "in_proj_bias"
        return KeySpec(f"{packed}.{suffix}", "dense" if leaf == "kernel" else "as-is", QKV.index(parts[-1]))
    torch_module = module_path_to_torch(module_path)
    name = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    key = f"{torch_module}.{name}" if torch_module else name
    if leaf != "kernel":
        return KeySpec(key, "as-is")
    if ndim in (4, 5):
        return KeySpec(key, "conv" if ndim == 4 else "conv3d")
    if parts[0] == "init_attn_0" and parts[-1] in ("proj_in", "proj_out"):
        return KeySpec(key, "conv1d_k1")
    return KeySpec(key, "dense")


def unet_key(flax_path: str, ndim: int) -> KeySpec:
    """KeySpec of a U-Net leaf (`/`-joined path); processor leaves map to the adapter file."""
    module_path, leaf = flax_path.rsplit("/", 1)
    if "/processor/" in flax_path:
        processor, inner = module_path.split("/processor/")
        owner = module_path_to_torch(processor + "/processor").replace(".", "_")
        spec = _leaf_spec(inner, leaf, ndim)
        return spec._replace(torch_key=f"kv_attn_layers.{owner}.{spec.torch_key}")
    spec = _leaf_spec(module_path, leaf, ndim)
    return spec._replace(torch_key=UNET_PREFIX + spec.torch_key)


def adapter_key(flax_path: str, ndim: int) -> KeySpec:
    """KeySpec of a StyleAdapter leaf (`image_context_model/...`, `scale_predictor/...`)."""
    if "/" not in flax_path:
        raise ValueError(f"adapter path {flax_path!r}: expected <module>/<leaf>")
    module_path, leaf = flax_path.rsplit("/", 1)
    if leaf in ("style_emb", "scale_emb", "proj"):
        return KeySpec(f"{module_path_to_torch(module_path)}.{leaf}", "as-is")
    return _leaf_spec(module_path, leaf, ndim)


def projector_key(flax_path: str, ndim: int) -> KeySpec:
    """KeySpec of a Resampler leaf: `layers_0/0/to_kv/kernel` -> `image_proj_model.layers.0.0.to_kv.weight`."""
    if "/" not in flax_path:  # `latents`, stored as is
        return KeySpec(PROJECTOR_PREFIX + flax_path, "as-is")
    module_path, leaf = flax_path.rsplit("/", 1)
    spec = _leaf_spec(module_path, leaf, ndim)
    return spec._replace(torch_key=PROJECTOR_PREFIX + spec.torch_key)


def image_embedder_key(flax_path: str, ndim: int) -> KeySpec:
    """KeySpec of a CLIP vision-tower leaf in an image-to-video checkpoint (`embedder.model.visual.*`)."""
    from stylecrafter_jax.checkpoints.clip_import import open_clip_key  # clip_import imports this module

    spec = open_clip_key(flax_path, ndim)
    return spec._replace(torch_key=f"{IMAGE_EMBEDDER_PREFIX}visual.{spec.torch_key}")
