"""Build the models from the `model` config section."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.style import StyleAdapter
from stylecrafter_jax.models.unet3d import UNet3D

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str) -> jnp.dtype:
    """The jnp dtype named by `model.dtype`."""
    if name not in DTYPES:
        raise ConfigError(f"model.dtype {name!r}: expected one of {sorted(DTYPES)}")
    return DTYPES[name]


def _common(model: ml_collections.ConfigDict) -> dict:
    return dict(dtype=compute_dtype(model.dtype), attention=model.attention, remat_policy=model.remat_policy)


def build_unet(model: ml_collections.ConfigDict) -> UNet3D:
    """The U-Net of `model.unet`, with the section's dtype, attention kernel and remat policy."""
    return UNet3D(**model.unet.to_dict(), **_common(model))


def build_adapter(model: ml_collections.ConfigDict) -> StyleAdapter:
    """The style adapter of `model.adapter`, with one scale per cross-attention layer of the U-Net."""
    unet = build_unet(model)
    if model.adapter.context_dim != model.unet.context_dim:
        raise ConfigError(f"model.adapter.context_dim {model.adapter.context_dim} must equal "
                          f"model.unet.context_dim {model.unet.context_dim}")
    return StyleAdapter(**model.adapter.to_dict(), num_cross_layers=unet.num_cross_attention_layers,
                        **_common(model))


def example_inputs(model: ml_collections.ConfigDict, batch: int = 1, with_style: bool = True) -> dict:
    """ShapeDtypeStructs of one U-Net and adapter call at the config's latent shape."""
    f32 = jnp.float32
    context_len = model.unet.text_length + (model.adapter.style_tokens if with_style else 0)
    return dict(
        x=jax.ShapeDtypeStruct((batch, model.frames, model.latent_height, model.latent_width,
                                model.unet.in_channels), f32),
        timesteps=jax.ShapeDtypeStruct((batch,), jnp.int32),
        context=jax.ShapeDtypeStruct((batch, context_len, model.unet.context_dim), f32),
        image_tokens=jax.ShapeDtypeStruct((batch, 257, model.adapter.image_dim), f32),
        text_context=jax.ShapeDtypeStruct((batch, model.unet.text_length, model.unet.context_dim), f32),
    )


def init_params(model: ml_collections.ConfigDict, key: jax.Array) -> dict:
    """Initialise {'unet': ..., 'adapter': ...} (boxed with logical axis names); jit or eval_shape it."""
    inputs = example_inputs(model)
    zeros = {k: jnp.zeros(v.shape, v.dtype) for k, v in inputs.items()}
    unet_key, adapter_key = jax.random.split(key)
    unet = build_unet(model).init(unet_key, zeros["x"], zeros["timesteps"], zeros["context"])["params"]
    adapter = build_adapter(model).init(adapter_key, zeros["image_tokens"], zeros["text_context"])["params"]
    return {"unet": unet, "adapter": adapter}


def param_shapes(model: ml_collections.ConfigDict) -> dict:
    """The boxed abstract parameter tree, computed with jax.eval_shape (nothing materialised)."""
    return jax.eval_shape(lambda key: init_params(model, key), jax.random.key(0))
