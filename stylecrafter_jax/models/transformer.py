"""The open_clip-style pre-LN transformer (packed-qkv MultiheadAttention, exact-GELU MLP).

Shared by the CLIP towers, the StyleTransformer and the ScaleEncoder. Parameter names mirror
open_clip's `ResidualAttentionBlock`: `ln_1`, `attn/{query,key,value,out_proj}` (the rows of torch's
packed `in_proj_weight`, in q, k, v order), `ln_2`, `mlp/{c_fc,c_proj}`; blocks are `resblocks_{i}`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from stylecrafter_jax.models.attention import dot_product_attention
from stylecrafter_jax.models.layers import LayerNorm, dense, gelu, merge_heads, split_heads
from stylecrafter_jax.models.remat import remat


class MultiheadAttention(nn.Module):
    """torch.nn.MultiheadAttention (batch-first) with separate q/k/v projections and biases."""

    width: int
    heads: int
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        head_dim = self.width // self.heads
        q, k, v = (split_heads(dense(self.width, ("embed", "heads"), name=n, dtype=self.dtype)(x), self.heads)
                   for n in ("query", "key", "value"))
        out = dot_product_attention(q, k, v, scale=head_dim ** -0.5, implementation=self.attention,
                                    mask=mask)
        return dense(self.width, ("heads", "embed"), name="out_proj", dtype=self.dtype)(merge_heads(out))


class ResidualAttentionBlock(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x)); MLP width·mlp_ratio with exact GELU."""

    width: int
    heads: int
    mlp_ratio: float = 4.0
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        x = x + MultiheadAttention(width=self.width, heads=self.heads, dtype=self.dtype, attention=self.attention,
                                   name="attn")(
            LayerNorm(name="ln_1")(x), mask)
        hidden = int(self.width * self.mlp_ratio)
        return x + _Mlp(width=self.width, hidden=hidden, dtype=self.dtype, name="mlp")(LayerNorm(name="ln_2")(x))


class _Mlp(nn.Module):
    """c_fc → exact GELU → c_proj."""

    width: int
    hidden: int
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = gelu(dense(self.hidden, ("embed", "mlp"), name="c_fc", dtype=self.dtype)(x))
        return dense(self.width, ("mlp", "embed"), name="c_proj", dtype=self.dtype)(h)


class Transformer(nn.Module):
    """A stack of `layers` ResidualAttentionBlocks named `resblocks_{i}`.

    `num_layers` runs only the first blocks (CLIP text uses 23 of 24) and `first_layer` starts later,
    so the stack can be run in two parts; init with the defaults runs them all, so every stored block
    has parameters.
    """

    width: int
    layers: int
    heads: int
    mlp_ratio: float = 4.0
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"
    remat_policy: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None,
                 num_layers: int | None = None, first_layer: int = 0) -> jax.Array:
        block_cls = remat(ResidualAttentionBlock, self.remat_policy)
        for i in range(first_layer, self.layers if num_layers is None else num_layers):
            x = block_cls(width=self.width, heads=self.heads, mlp_ratio=self.mlp_ratio, dtype=self.dtype,
                          attention=self.attention, name=f"resblocks_{i}")(x, mask)
        return x
