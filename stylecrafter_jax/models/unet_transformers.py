"""The U-Net's SpatialTransformer (self + dual cross-attention) and TemporalTransformer.

The spatial ones take the text(+style) `context` and, in the image-to-video models, `image_context`
with a per-sample `image_multiplier` (see `unet_layers.DualCrossAttention`).
"""

from __future__ import annotations

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from stylecrafter_jax.models.layers import GroupNorm, LayerNorm, dense
from stylecrafter_jax.models.unet_layers import (
    TOKEN_AXES, ZEROS, DualCrossAttention, FeedForward, SelfAttention, TemporalAttention)


class SpatialBlock(nn.Module):
    """Pre-LN: x + attn1(norm1 x); x + attn2(norm2 x, context); x + ff(norm3 x)."""

    heads: int
    head_dim: int = 64
    text_length: int = 77
    with_style: bool = True
    style_scaled: bool = True
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"
    with_image: bool = False
    image_scale_learnable: bool = False
    image_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array, multiplier: jax.Array | None,
                 image_context: jax.Array | None = None, image_multiplier: jax.Array | None = None) -> jax.Array:
        x = x + SelfAttention(heads=self.heads, head_dim=self.head_dim, dtype=self.dtype, attention=self.attention,
                              name="attn1")(LayerNorm(name="norm1")(x))
        attn2 = DualCrossAttention(heads=self.heads, head_dim=self.head_dim, text_length=self.text_length,
                                   with_style=self.with_style, style_scaled=self.style_scaled, dtype=self.dtype,
                                   attention=self.attention, with_image=self.with_image,
                                   image_scale_learnable=self.image_scale_learnable, image_scale=self.image_scale,
                                   name="attn2")
        x = x + attn2(LayerNorm(name="norm2")(x), context, multiplier, image_context, image_multiplier)
        return x + FeedForward(dim=x.shape[-1], dtype=self.dtype, name="ff")(LayerNorm(name="norm3")(x))


class SpatialTransformer(nn.Module):
    """Per-frame GroupNorm (eps 1e-6), linear proj_in, one SpatialBlock, zero-init proj_out, residual."""

    heads: int
    head_dim: int = 64
    text_length: int = 77
    with_style: bool = True
    style_scaled: bool = True
    norm_groups: int = 32
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"
    with_image: bool = False
    image_scale_learnable: bool = False
    image_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array, multiplier: jax.Array | None,
                 image_context: jax.Array | None = None, image_multiplier: jax.Array | None = None) -> jax.Array:
        _, h, w, c = x.shape
        inner = self.heads * self.head_dim
        y = einops.rearrange(GroupNorm(num_groups=self.norm_groups, epsilon=1e-6, name="norm")(x),
                             "n h w c -> n (h w) c")
        y = dense(inner, ("embed", "heads"), name="proj_in", dtype=self.dtype)(y)
        y = nn.with_logical_constraint(y, TOKEN_AXES)
        block = SpatialBlock(heads=self.heads, head_dim=self.head_dim, text_length=self.text_length,
                             with_style=self.with_style, style_scaled=self.style_scaled, dtype=self.dtype,
                             attention=self.attention, with_image=self.with_image,
                             image_scale_learnable=self.image_scale_learnable, image_scale=self.image_scale,
                             name="transformer_blocks_0")
        y = block(y, context, multiplier, image_context, image_multiplier)
        y = dense(c, ("heads", "embed"), name="proj_out", dtype=self.dtype, kernel_init=ZEROS)(y)
        return x + einops.rearrange(y, "n (h w) c -> n h w c", h=h)


class TemporalBlock(nn.Module):
    """Pre-LN: two temporal self-attentions (attn1, attn2; relative positions optional), then GEGLU ff."""

    heads: int
    head_dim: int = 64
    max_distance: int = 16
    dtype: DTypeLike = jnp.float32
    relative_position: bool = True
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, frame_isolated: bool) -> jax.Array:
        for i in (1, 2):
            attn = TemporalAttention(heads=self.heads, head_dim=self.head_dim, max_distance=self.max_distance,
                                     dtype=self.dtype, relative_position=self.relative_position,
                                     attention=self.attention, name=f"attn{i}")
            x = x + attn(LayerNorm(name=f"norm{i}")(x), frame_isolated)
        return x + FeedForward(dim=x.shape[-1], dtype=self.dtype, name="ff")(LayerNorm(name="norm3")(x))


class TemporalTransformer(nn.Module):
    """GroupNorm joint over frames (eps 1e-6), proj_in, TemporalBlock over (b·h·w, t, ·), proj_out.

    `inner` is heads·head_dim (= channels in the U-Net blocks, 512 for init_attn, whose official
    proj_in/out are k=1 Conv1d: the same map as a Linear).
    """

    heads: int
    head_dim: int = 64
    max_distance: int = 16
    norm_groups: int = 32
    dtype: DTypeLike = jnp.float32
    relative_position: bool = True
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, frame_isolated: bool = False) -> jax.Array:
        _, _, h, w, c = x.shape
        inner = self.heads * self.head_dim
        y = GroupNorm(num_groups=self.norm_groups, epsilon=1e-6, name="norm")(x)
        y = einops.rearrange(y, "b t h w c -> (b h w) t c")
        y = dense(inner, ("embed", "heads"), name="proj_in", dtype=self.dtype)(y)
        y = TemporalBlock(heads=self.heads, head_dim=self.head_dim, max_distance=self.max_distance, dtype=self.dtype,
                          relative_position=self.relative_position, attention=self.attention,
                          name="transformer_blocks_0")(y, frame_isolated)
        y = dense(c, ("heads", "embed"), name="proj_out", dtype=self.dtype, kernel_init=ZEROS)(y)
        return x + einops.rearrange(y, "(b h w) t c -> b t h w c", h=h, w=w)
