"""Import (and export) of the KL autoencoder from the official and the diffusers state-dict layouts.

- official (LDM/VideoCrafter): `first_stage_model.encoder.down.1.block.0.conv1.weight`, ...,
  `…mid.attn_1.q.weight` as (C, C, 1, 1) convolutions, `first_stage_model.quant_conv.weight`.
- diffusers `AutoencoderKL`: `encoder.down_blocks.1.resnets.0.conv1.weight`, `…mid_block.attentions.0.to_q.weight`
  as (C, C) linears, `decoder.up_blocks.0.*` being the official `decoder.up.{levels-1}.*`.
Both are state dicts of numpy arrays (`safetensors.numpy.load_file` reads diffusers files without
torch) and are checked strictly: every key under the prefix must be used, none may be missing.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from stylecrafter_jax.checkpoints.key_maps import (add_prefix, export_state_dict, flat_shapes, import_state_dict,
                                                   select_prefix)
from stylecrafter_jax.checkpoints.official_keys import KeySpec
from stylecrafter_jax.models.vae import AutoencoderKL

VAE_PREFIX = "first_stage_model."
_INDEXED = re.compile(r"^(down|up|block)_(\d+)$")
_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def official_vae_key(path: str, ndim: int) -> KeySpec:
    """Official key of a VAE leaf: `encoder/down_1/block_0/conv1/kernel` → `encoder.down.1.block.0.conv1.weight`.

    The mid block's `block_1`, `attn_1` and `block_2` are literal names; its attention projections
    are 1x1 convolutions in the checkpoint and Dense layers here.
    """
    *modules, leaf = path.split("/")
    names = [m if "mid" in modules[:i] else _INDEXED.sub(r"\1.\2", m) for i, m in enumerate(modules)]
    name = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    transform = "as-is" if leaf != "kernel" else ("conv" if ndim == 4 else "conv1x1_dense")
    return KeySpec(".".join([*names, name]), transform)


def diffusers_vae_key(num_levels: int) -> Callable[[str, int], KeySpec]:
    """The diffusers-key function for a VAE of `num_levels` resolution levels (len(ch_mult))."""

    def key_fn(path: str, ndim: int) -> KeySpec:
        spec = official_vae_key(path, ndim)
        key = spec.torch_key
        key = re.sub(r"^encoder\.down\.(\d+)\.block\.", r"encoder.down_blocks.\1.resnets.", key)
        key = re.sub(r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0.", key)
        key = re.sub(r"^decoder\.up\.(\d+)\.block\.",
                     lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m.group(1))}.resnets.", key)
        key = re.sub(r"^decoder\.up\.(\d+)\.upsample\.",
                     lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m.group(1))}.upsamplers.0.", key)
        key = re.sub(r"\.mid\.block_(\d)\.", lambda m: f".mid_block.resnets.{int(m.group(1)) - 1}.", key)
        key = re.sub(r"\.mid\.attn_1\.(\w+)\.", lambda m: f".mid_block.attentions.0.{_ATTENTION[m.group(1)]}.", key)
        key = key.replace(".nin_shortcut.", ".conv_shortcut.").replace(".norm_out.", ".conv_norm_out.")
        transform = "dense" if spec.transform == "conv1x1_dense" else spec.transform
        return KeySpec(key, transform)

    return key_fn


def vae_param_shapes(vae: AutoencoderKL) -> dict[str, tuple[int, ...]]:
    """{path: shape} of the VAE, from jax.eval_shape (nothing allocated)."""
    f = vae.downsample_factor
    images = jax.ShapeDtypeStruct((1, f, f, vae.in_channels), jnp.float32)
    return flat_shapes(jax.eval_shape(vae.init, jax.random.key(0), images)["params"])


def vae_params_from_official(state_dict: Mapping[str, Any], vae: AutoencoderKL, prefix: str = VAE_PREFIX) -> dict:
    """VAE parameters from the keys under `prefix` of an official (VideoCrafter/LDM) state dict."""
    return import_state_dict(select_prefix(state_dict, prefix), vae_param_shapes(vae), official_vae_key,
                             source=f"official VAE (keys under {prefix!r})")


def vae_params_from_diffusers(state_dict: Mapping[str, Any], vae: AutoencoderKL) -> dict:
    """VAE parameters from a diffusers AutoencoderKL state dict."""
    return import_state_dict(state_dict, vae_param_shapes(vae), diffusers_vae_key(len(vae.ch_mult)),
                             source="diffusers AutoencoderKL")


def vae_params_to_official(params: Any, prefix: str = VAE_PREFIX) -> dict[str, np.ndarray]:
    """The official state dict (under `prefix`) of VAE parameters."""
    return add_prefix(export_state_dict(params, official_vae_key), prefix)
