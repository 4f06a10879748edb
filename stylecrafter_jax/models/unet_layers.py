"""The U-Net's building blocks: ResBlock (with its optional TemporalConvBlock), resampling, attentions, GEGLU.

Spatial parts run on (b*t, h, w, c); the temporal transformer on (b, t, h, w, c). Parameter names
mirror the state-dict keys of the official VideoCrafter U-Net and its attention modules.
"""

from __future__ import annotations

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from stylecrafter_jax.models.attention import dot_product_attention, relative_position_attention
from stylecrafter_jax.models.image_context import image_cross_attention
from stylecrafter_jax.models.layers import (GroupNorm, LayerNorm, conv, dense, gelu, merge_heads, partitioned,
                                            split_heads)

ZEROS = nn.initializers.zeros_init()
ACTIVATION_AXES = ("activation_batch", "activation_height", "activation_width", "activation_embed")
TOKEN_AXES = ("activation_batch", "activation_length", "activation_embed")


class ResBlock(nn.Module):
    """GN→SiLU→conv, + emb bias, GN→SiLU→conv (zero-init), + skip (1x1 conv when widths differ).

    With `temporal_conv`, a TemporalConvBlock (`temopral_conv`, the official spelling) follows the
    residual; `frames` is the clip length it mixes over ((b·frames, h, w, c) input) and None skips it.
    """

    out_channels: int
    norm_groups: int = 32
    dtype: DTypeLike = jnp.float32
    temporal_conv: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, frames: int | None = None) -> jax.Array:
        h = nn.silu(GroupNorm(num_groups=self.norm_groups, epsilon=1e-5, name="in_layers_0")(x))
        h = conv(self.out_channels, 3, name="in_layers_2", dtype=self.dtype)(h)
        e = dense(self.out_channels, ("mlp", "embed"), name="emb_layers_1", dtype=self.dtype)(nn.silu(emb))
        h = h + e[:, None, None, :].astype(h.dtype)
        h = nn.silu(GroupNorm(num_groups=self.norm_groups, epsilon=1e-5, name="out_layers_0")(h))
        h = conv(self.out_channels, 3, name="out_layers_3", dtype=self.dtype, kernel_init=ZEROS)(h)
        if x.shape[-1] != self.out_channels:
            x = conv(self.out_channels, 1, name="skip_connection", dtype=self.dtype)(x)
        h = x + h
        if not self.temporal_conv or (frames is None and not self.is_initializing()):
            return h
        block = TemporalConvBlock(channels=self.out_channels, norm_groups=self.norm_groups, dtype=self.dtype,
                                  name="temopral_conv")
        video = block(einops.rearrange(h, "(b t) h w c -> b t h w c", t=frames or 1))
        return einops.rearrange(video, "b t h w c -> (b t) h w c")


class TemporalConvBlock(nn.Module):
    """x + conv4(conv3(conv2(conv1(x)))) on (b, t, h, w, c); each conv is GN → SiLU → (3, 1, 1) temporal conv.

    GroupNorm eps 1e-5 with statistics joint over frames; the convs zero-pad one frame at each end;
    conv4 is zero-initialised, so the block starts as the identity. Children `conv{i}_0` (GN) and
    `conv1_2` / `conv{2,3,4}_3` (the conv: index 2 of conv2..4 is the reference's inference-time no-op
    Dropout(0.1)).
    """

    channels: int
    norm_groups: int = 32
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for i in range(1, 5):
            h = nn.silu(GroupNorm(num_groups=self.norm_groups, epsilon=1e-5, name=f"conv{i}_0")(h))
            h = nn.Conv(features=self.channels, kernel_size=(3, 1, 1), padding=((1, 1), (0, 0), (0, 0)),
                        dtype=self.dtype, param_dtype=jnp.float32,
                        kernel_init=partitioned(ZEROS if i == 4 else nn.initializers.lecun_normal(),
                                                (None, None, None, "conv_in", "conv_out")),
                        bias_init=partitioned(ZEROS, ("conv_out",)), name=f"conv{i}_{2 if i == 1 else 3}")(h)
        return x + h


class Downsample(nn.Module):
    """Conv3x3, stride 2, symmetric padding 1."""

    channels: int
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return conv(self.channels, 3, stride=2, name="op", dtype=self.dtype)(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 (each pixel repeated 2x2), then Conv3x3."""

    channels: int
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = einops.repeat(x, "b h w c -> b (h 2) (w 2) c")
        return conv(self.channels, 3, name="conv", dtype=self.dtype)(x)


class GEGLUProjection(nn.Module):
    """`proj` to 2·inner, split into (value, gate), value·GELU(gate) with exact GELU."""

    inner: int
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        value, gate = jnp.split(dense(2 * self.inner, ("embed", "mlp"), name="proj", dtype=self.dtype)(x), 2,
                                axis=-1)
        return value * gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward: net_0 (GEGLU to 4·dim), net_2 (Linear back to dim)."""

    dim: int
    mult: int = 4
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = GEGLUProjection(inner=self.dim * self.mult, dtype=self.dtype, name="net_0")(x)
        return dense(self.dim, ("mlp", "embed"), name="net_2", dtype=self.dtype)(h)


class SelfAttention(nn.Module):
    """Bias-free q/k/v, to_out_0 with bias, softmax(q·kᵀ/√d)."""

    heads: int
    head_dim: int = 64
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        inner = self.heads * self.head_dim
        q, k, v = (split_heads(dense(inner, ("embed", "heads"), name=n, use_bias=False, dtype=self.dtype)(x),
                               self.heads) for n in ("to_q", "to_k", "to_v"))
        out = dot_product_attention(q, k, v, scale=self.head_dim ** -0.5, implementation=self.attention)
        return dense(x.shape[-1], ("heads", "embed"), name="to_out_0", dtype=self.dtype)(merge_heads(out))


class DualCrossAttention(nn.Module):
    """Text cross-attention plus the StyleCrafter style branch and/or the I2V image branch.

    out = to_out(A_text + m · LN_style(A_style) + λ · m_img · A_image); q and to_out are shared. The
    style branch runs when style tokens follow the text in `context` (its K/V and LN live under
    `processor/` as in the official merged state dict); `m` is the per-sample multiplier
    (1 + s_i)·style_weight of this layer, 0 switching it off for that sample. The image branch
    (`to_k_ip`, `to_v_ip`, `alpha` beside to_q, see `image_context.image_cross_attention`) runs when
    `image_context` is given; `m_img` (n,) is its per-sample weight (None means 1).
    """

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
        inner = self.heads * self.head_dim
        scale = self.head_dim ** -0.5
        proj = lambda name, y: split_heads(  # noqa: E731
            dense(inner, ("embed", "heads"), name=name, use_bias=False, dtype=self.dtype)(y), self.heads)
        q = proj("to_q", x)
        text, style = context[:, :self.text_length], context[:, self.text_length:]
        out = merge_heads(dot_product_attention(q, proj("to_k", text), proj("to_v", text), scale=scale,
                                                implementation=self.attention))
        if self.with_style and (style.shape[1] > 0 or self.is_initializing()):
            out = out + StyleBranch(heads=self.heads, head_dim=self.head_dim, scaled=self.style_scaled,
                                    dtype=self.dtype, attention=self.attention, name="processor")(q, style, multiplier)
        if self.with_image and (image_context is not None or self.is_initializing()):
            out = out + image_cross_attention(
                self, q, context[:, :0] if image_context is None else image_context, heads=self.heads,
                head_dim=self.head_dim, learnable=self.image_scale_learnable, scale=self.image_scale,
                multiplier=image_multiplier, dtype=self.dtype, attention=self.attention)
        return dense(x.shape[-1], ("heads", "embed"), name="to_out_0", dtype=self.dtype)(out)


class StyleBranch(nn.Module):
    """m · LN_style(softmax(q·k_styleᵀ·scale)·v_style); scale 1/√d, or 1 for the reference's einsum path."""

    heads: int
    head_dim: int = 64
    scaled: bool = True
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, q: jax.Array, style: jax.Array, multiplier: jax.Array | None) -> jax.Array:
        inner = self.heads * self.head_dim
        k, v = (split_heads(dense(inner, ("embed", "heads"), name=n, use_bias=False, dtype=self.dtype)(style),
                            self.heads) for n in ("to_k_style", "to_v_style"))
        scale = self.head_dim ** -0.5 if self.scaled else 1.0
        out = LayerNorm(axis_name="heads", name="norm_style")(
            merge_heads(dot_product_attention(q, k, v, scale=scale, implementation=self.attention)))
        if multiplier is None:
            return out
        return out * multiplier[:, None, None].astype(out.dtype)


class TemporalAttention(nn.Module):
    """Temporal self-attention, with relative-position tables (33, head_dim) for k and v or (VideoCrafter2,
    DynamiCrafter) without: softmax(q·kᵀ/√d)·v.

    `frame_isolated` (the reference's image batches: identity mask) reduces it to to_out(to_v(x)).
    """

    heads: int
    head_dim: int = 64
    max_distance: int = 16
    dtype: DTypeLike = jnp.float32
    relative_position: bool = True
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, frame_isolated: bool = False) -> jax.Array:
        inner = self.heads * self.head_dim
        proj = lambda name: split_heads(  # noqa: E731
            dense(inner, ("embed", "heads"), name=name, use_bias=False, dtype=self.dtype)(x), self.heads)
        v = proj("to_v")
        scale = self.head_dim ** -0.5
        if self.relative_position:
            table_shape = (2 * self.max_distance + 1, self.head_dim)
            table_k = _RelativePositionTable(shape=table_shape, name="relative_position_k")()
            table_v = _RelativePositionTable(shape=table_shape, name="relative_position_v")()
        if frame_isolated:
            out = v
        elif self.relative_position:
            out = relative_position_attention(proj("to_q"), proj("to_k"), v, table_k, table_v, scale=scale,
                                              max_distance=self.max_distance)
        else:
            out = dot_product_attention(proj("to_q"), proj("to_k"), v, scale=scale, implementation=self.attention)
        return dense(x.shape[-1], ("heads", "embed"), name="to_out_0", dtype=self.dtype)(merge_heads(out))


class _RelativePositionTable(nn.Module):
    """The learned `embeddings_table` of one relative-position embedding."""

    shape: tuple[int, int]

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("embeddings_table", partitioned(nn.initializers.xavier_uniform(), (None, None)),
                          self.shape, jnp.float32)
