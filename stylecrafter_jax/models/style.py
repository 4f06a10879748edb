"""The StyleCrafter style adapter: StyleTransformer (style tokens) and ScaleEncoder (per-layer scales).

The third part of the adapter, the 16 style K/V projections and LayerNorms, lives inside the U-Net
(`.../attn2/processor/`), where it is applied.
"""

from __future__ import annotations

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.layers import LayerNorm, dense, gelu, partitioned
from stylecrafter_jax.models.transformer import Transformer


def _queries(module: nn.Module, name: str, tokens: int, width: int) -> jax.Array:
    """Learned (1, tokens, width) queries, initialised N(0, 1)·width^-0.5 as the reference does."""
    init = lambda key, shape, dtype=jnp.float32: width ** -0.5 * jax.random.normal(key, shape, dtype)  # noqa: E731
    return module.param(name, partitioned(init, (None, None, "embed")), (1, tokens, width), jnp.float32)


def query_transformer(module: nn.Module, tokens: jax.Array, *, queries_name: str, width: int, heads: int,
                      num_tokens: int, layers: int) -> jax.Array:
    """Inside `module`: prepend learned queries, ln1, joint self-attention blocks, keep the queries, ln2."""
    queries = _queries(module, queries_name, num_tokens, width)
    x = jnp.concatenate([jnp.broadcast_to(queries, (tokens.shape[0],) + queries.shape[1:]),
                         tokens.astype(jnp.float32)], axis=1).astype(module.dtype)
    x = LayerNorm(name="ln1")(x)
    x = Transformer(width=width, layers=layers, heads=heads, dtype=module.dtype, attention=module.attention,
                    remat_policy=module.remat_policy, name="transformer_blocks")(x)
    return LayerNorm(name="ln2")(x[:, :num_tokens])


class StyleTransformer(nn.Module):
    """CLIP image tokens (b, n_ref·257, in_dim) or (b, n_ref, 257, in_dim) -> style tokens (b, 8, out_dim)."""

    in_dim: int = 1280
    out_dim: int = 1024
    num_heads: int = 8
    num_tokens: int = 8
    n_layers: int = 3
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"
    remat_policy: str = "none"

    @nn.compact
    def __call__(self, image_tokens: jax.Array) -> jax.Array:
        if image_tokens.ndim == 4:  # several references: their tokens are concatenated
            image_tokens = einops.rearrange(image_tokens, "b refs l d -> b (refs l) d")
        if image_tokens.ndim != 3 or image_tokens.shape[-1] != self.in_dim:
            raise ShapeError(f"image_tokens: got shape {image_tokens.shape}, need (b, [n_ref,] tokens, "
                             f"{self.in_dim})")
        x = query_transformer(self, image_tokens, queries_name="style_emb", width=self.in_dim,
                              heads=self.num_heads, num_tokens=self.num_tokens, layers=self.n_layers)
        proj = self.param("proj", partitioned(lambda k, s, d=jnp.float32: self.in_dim ** -0.5
                                              * jax.random.normal(k, s, d), ("embed", "heads")),
                          (self.in_dim, self.out_dim), jnp.float32)
        return jnp.einsum("bnc,cd->bnd", x, proj.astype(x.dtype)).astype(jnp.float32)


class ScaleEncoder(nn.Module):
    """[style tokens; text tokens] -> one tanh scale per cross-attention layer, (b, num_tokens)."""

    in_dim: int = 1024
    out_dim: int = 1
    num_heads: int = 8
    num_tokens: int = 16
    n_layers: int = 2
    mid_dim: int = 32
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"
    remat_policy: str = "none"

    @nn.compact
    def __call__(self, style_tokens: jax.Array, text_context: jax.Array) -> jax.Array:
        tokens = jnp.concatenate([style_tokens, text_context.astype(style_tokens.dtype)], axis=1)
        x = query_transformer(self, tokens, queries_name="scale_emb", width=self.in_dim, heads=self.num_heads,
                              num_tokens=self.num_tokens, layers=self.n_layers)
        x = gelu(dense(self.mid_dim, ("embed", "mlp"), name="out_0", dtype=self.dtype)(x))
        x = jnp.tanh(dense(self.out_dim, ("mlp", None), name="out_2", dtype=self.dtype)(x).astype(jnp.float32))
        return x[..., 0]


class StyleAdapter(nn.Module):
    """image_context_model + scale_predictor: (CLIP image tokens, text context) -> (style tokens, scales)."""

    image_dim: int = 1280
    context_dim: int = 1024
    style_heads: int = 8
    style_tokens: int = 8
    style_layers: int = 3
    scale_heads: int = 8
    scale_layers: int = 2
    scale_mid_dim: int = 32
    num_cross_layers: int = 16
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"
    remat_policy: str = "none"

    @nn.compact
    def __call__(self, image_tokens: jax.Array, text_context: jax.Array) -> tuple[jax.Array, jax.Array]:
        common = dict(dtype=self.dtype, attention=self.attention, remat_policy=self.remat_policy)
        style = StyleTransformer(in_dim=self.image_dim, out_dim=self.context_dim, num_heads=self.style_heads,
                                 num_tokens=self.style_tokens, n_layers=self.style_layers, **common,
                                 name="image_context_model")(image_tokens)
        scales = ScaleEncoder(in_dim=self.context_dim, out_dim=1, num_heads=self.scale_heads,
                              num_tokens=self.num_cross_layers, n_layers=self.scale_layers, mid_dim=self.scale_mid_dim,
                              **common, name="scale_predictor")(style, text_context)
        return style, scales


def style_multipliers(scales: jax.Array, style_weight: float | jax.Array) -> jax.Array:
    """The per-layer multipliers of the style branch: (1 + tanh output)·style_weight."""
    return (1.0 + scales) * style_weight
