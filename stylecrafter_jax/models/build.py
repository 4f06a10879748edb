"""Build the models from the `model` config section."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.image_context import Resampler
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


def build_projector(model: ml_collections.ConfigDict) -> Resampler:
    """The image projector of `model.projector`, checked against the U-Net's image context."""
    projector, unet = model.projector, model.unet
    if projector.output_dim != unet.context_dim:
        raise ConfigError(f"model.projector.output_dim {projector.output_dim} must equal model.unet.context_dim "
                          f"{unet.context_dim}")
    if not unet.get("image_cross_attention", False):
        raise ConfigError("model.projector needs model.unet.image_cross_attention = True")
    if projector.video_length > 1 and (projector.num_queries != unet.image_tokens_per_frame
                                       or projector.video_length != model.frames):
        raise ConfigError(f"model.projector: per-frame tokens need num_queries {projector.num_queries} = "
                          f"model.unet.image_tokens_per_frame {unet.image_tokens_per_frame} and video_length "
                          f"{projector.video_length} = model.frames {model.frames}")
    return Resampler(**projector.to_dict(), dtype=compute_dtype(model.dtype), attention=model.attention)


def has_style(model: ml_collections.ConfigDict) -> bool:
    """Whether the model has StyleCrafter's style branch (a `model.adapter` section)."""
    return "adapter" in model


def has_image(model: ml_collections.ConfigDict) -> bool:
    """Whether the model has the image-to-video projector (a `model.projector` section)."""
    return "projector" in model


def example_inputs(model: ml_collections.ConfigDict, batch: int = 1, with_style: bool = True) -> dict:
    """ShapeDtypeStructs of one U-Net call (and the adapter's or projector's) at the config's latent shape.

    Keys: x, timesteps, context, text_context, image_tokens (the CLIP tokens the adapter or projector
    reads), and for the image-to-video models image_context and (with VDG) concat.
    """
    f32 = jnp.float32
    unet = model.unet
    style = has_style(model) and with_style
    context_len = unet.text_length + (model.adapter.style_tokens if style else 0)
    image_dim = model.adapter.image_dim if has_style(model) else model.projector.embedding_dim
    latent = (batch, model.frames, model.latent_height, model.latent_width)
    concat_channels = unet.get("concat_channels", 0)
    inputs = dict(
        x=jax.ShapeDtypeStruct(latent + (unet.in_channels - concat_channels,), f32),
        timesteps=jax.ShapeDtypeStruct((batch,), jnp.int32),
        context=jax.ShapeDtypeStruct((batch, context_len, unet.context_dim), f32),
        image_tokens=jax.ShapeDtypeStruct((batch, 257, image_dim), f32),
        text_context=jax.ShapeDtypeStruct((batch, unet.text_length, unet.context_dim), f32),
    )
    if has_image(model):
        tokens = model.projector.num_queries * model.projector.video_length
        inputs["image_context"] = jax.ShapeDtypeStruct((batch, tokens, unet.context_dim), f32)
    if concat_channels:
        inputs["concat"] = jax.ShapeDtypeStruct(latent + (concat_channels,), f32)
    return inputs


def unet_branch_inputs(inputs: dict) -> dict:
    """The keyword inputs of the U-Net's image and VDG branches among `example_inputs`."""
    return {name: inputs[name] for name in ("image_context", "concat") if name in inputs}


def init_params(model: ml_collections.ConfigDict, key: jax.Array) -> dict:
    """Initialise {'unet'[, 'adapter'][, 'projector']} (boxed with logical axis names); jit or eval_shape it."""
    inputs = example_inputs(model)
    zeros = {k: jnp.zeros(v.shape, v.dtype) for k, v in inputs.items()}
    unet_key, adapter_key = jax.random.split(key)
    params = {"unet": build_unet(model).init(unet_key, zeros["x"], zeros["timesteps"], zeros["context"],
                                             **unet_branch_inputs(zeros))["params"]}
    if has_style(model):
        params["adapter"] = build_adapter(model).init(adapter_key, zeros["image_tokens"],
                                                      zeros["text_context"])["params"]
    if has_image(model):
        params["projector"] = build_projector(model).init(jax.random.fold_in(key, 2),
                                                          zeros["image_tokens"])["params"]
    return params


def param_shapes(model: ml_collections.ConfigDict) -> dict:
    """The boxed abstract parameter tree, computed with jax.eval_shape (nothing materialised)."""
    return jax.eval_shape(lambda key: init_params(model, key), jax.random.key(0))
