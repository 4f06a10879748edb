"""The U-Net's building blocks: ResBlock, resampling, attentions, GEGLU and the two transformers.

Spatial parts run on (b*t, h, w, c); the temporal transformer on (b, t, h, w, c). Parameter names
mirror `lvdm/modules/networks/openaimodel3d.py` and `lvdm/modules/attention.py`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylecrafter_jax.models.attention import dot_product_attention, relative_position_attention
from stylecrafter_jax.models.layers import GroupNorm, LayerNorm, conv, dense, gelu, partitioned

Dtype = Any
ZEROS = nn.initializers.zeros_init()
ACTIVATION_AXES = ("activation_batch", "activation_height", "activation_width", "activation_embed")
TOKEN_AXES = ("activation_batch", "activation_length", "activation_embed")


def split_heads(x: jax.Array, heads: int) -> jax.Array:
    """(n, l, heads*d) -> (n, l, heads, d)."""
    return x.reshape(x.shape[:-1] + (heads, x.shape[-1] // heads))


def merge_heads(x: jax.Array) -> jax.Array:
    """(n, l, heads, d) -> (n, l, heads*d)."""
    return x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],))


class ResBlock(nn.Module):
    """GN→SiLU→conv, + emb bias, GN→SiLU→conv (zero-init), + skip (1x1 conv when widths differ)."""

    out_channels: int
    norm_groups: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        h = nn.silu(GroupNorm(self.norm_groups, 1e-5, name="in_layers_0")(x))
        h = conv(self.out_channels, 3, name="in_layers_2", dtype=self.dtype)(h)
        e = dense(self.out_channels, ("mlp", "embed"), name="emb_layers_1", dtype=self.dtype)(nn.silu(emb))
        h = h + e[:, None, None, :].astype(h.dtype)
        h = nn.silu(GroupNorm(self.norm_groups, 1e-5, name="out_layers_0")(h))
        h = conv(self.out_channels, 3, name="out_layers_3", dtype=self.dtype, kernel_init=ZEROS)(h)
        if x.shape[-1] != self.out_channels:
            x = conv(self.out_channels, 1, name="skip_connection", dtype=self.dtype)(x)
        return x + h


class Downsample(nn.Module):
    """Conv3x3, stride 2, symmetric padding 1."""

    channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return conv(self.channels, 3, stride=2, name="op", dtype=self.dtype)(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 (each pixel repeated 2x2), then Conv3x3."""

    channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return conv(self.channels, 3, name="conv", dtype=self.dtype)(x)


class GEGLUProjection(nn.Module):
    """`proj` to 2·inner, split into (value, gate), value·GELU(gate) with exact GELU."""

    inner: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        value, gate = jnp.split(dense(2 * self.inner, ("embed", "mlp"), name="proj", dtype=self.dtype)(x), 2,
                                axis=-1)
        return value * gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward: net_0 (GEGLU to 4·dim), net_2 (Linear back to dim)."""

    dim: int
    mult: int = 4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = GEGLUProjection(self.dim * self.mult, self.dtype, name="net_0")(x)
        return dense(self.dim, ("mlp", "embed"), name="net_2", dtype=self.dtype)(h)


class SelfAttention(nn.Module):
    """Bias-free q/k/v, to_out_0 with bias, softmax(q·kᵀ/√d)."""

    heads: int
    head_dim: int = 64
    dtype: Dtype = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        inner = self.heads * self.head_dim
        q, k, v = (split_heads(dense(inner, ("embed", "heads"), name=n, use_bias=False, dtype=self.dtype)(x),
                               self.heads) for n in ("to_q", "to_k", "to_v"))
        out = dot_product_attention(q, k, v, scale=self.head_dim ** -0.5, implementation=self.attention)
        return dense(x.shape[-1], ("heads", "embed"), name="to_out_0", dtype=self.dtype)(merge_heads(out))


class DualCrossAttention(nn.Module):
    """Text cross-attention plus, when style tokens follow the text, the StyleCrafter style branch.

    out = to_out(A_text + m · LN_style(A_style)); q and to_out are shared; the style K/V and LN live
    under `processor/` as in the official merged state dict. `m` is the per-sample multiplier
    (1 + s_i)·style_weight of this layer; 0 switches the style branch off for that sample.
    """

    heads: int
    head_dim: int = 64
    text_length: int = 77
    with_style: bool = True
    style_scaled: bool = True
    dtype: Dtype = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array, multiplier: jax.Array | None) -> jax.Array:
        inner = self.heads * self.head_dim
        scale = self.head_dim ** -0.5
        proj = lambda name, y: split_heads(  # noqa: E731
            dense(inner, ("embed", "heads"), name=name, use_bias=False, dtype=self.dtype)(y), self.heads)
        q = proj("to_q", x)
        text, style = context[:, :self.text_length], context[:, self.text_length:]
        out = merge_heads(dot_product_attention(q, proj("to_k", text), proj("to_v", text), scale=scale,
                                                implementation=self.attention))
        if self.with_style and (style.shape[1] > 0 or self.is_initializing()):
            out = out + StyleBranch(self.heads, self.head_dim, self.style_scaled, self.dtype, self.attention,
                                    name="processor")(q, style, multiplier)
        return dense(x.shape[-1], ("heads", "embed"), name="to_out_0", dtype=self.dtype)(out)


class StyleBranch(nn.Module):
    """m · LN_style(softmax(q·k_styleᵀ·scale)·v_style); scale 1/√d, or 1 for the reference's einsum path."""

    heads: int
    head_dim: int = 64
    scaled: bool = True
    dtype: Dtype = jnp.float32
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
    """Temporal self-attention with relative-position tables (33, head_dim) for k and v.

    `frame_isolated` (the reference's image batches: identity mask) reduces it to to_out(to_v(x)).
    """

    heads: int
    head_dim: int = 64
    max_distance: int = 16
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, frame_isolated: bool = False) -> jax.Array:
        inner = self.heads * self.head_dim
        proj = lambda name: split_heads(  # noqa: E731
            dense(inner, ("embed", "heads"), name=name, use_bias=False, dtype=self.dtype)(x), self.heads)
        v = proj("to_v")
        table_shape = (2 * self.max_distance + 1, self.head_dim)
        table_k = _RelativePositionTable(table_shape, name="relative_position_k")()
        table_v = _RelativePositionTable(table_shape, name="relative_position_v")()
        if frame_isolated:
            out = v
        else:
            out = relative_position_attention(proj("to_q"), proj("to_k"), v, table_k, table_v,
                                              scale=self.head_dim ** -0.5, max_distance=self.max_distance)
        return dense(x.shape[-1], ("heads", "embed"), name="to_out_0", dtype=self.dtype)(merge_heads(out))


class _RelativePositionTable(nn.Module):
    """The learned `embeddings_table` of one relative-position embedding."""

    shape: tuple[int, int]

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("embeddings_table", partitioned(nn.initializers.xavier_uniform(), (None, None)),
                          self.shape, jnp.float32)
