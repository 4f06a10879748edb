"""The image branch of VideoCrafter1 I2V and DynamiCrafter: the Resampler projector and the image cross-attention.

- `Resampler` (`image_proj_model`): CLIP image tokens (b, 257, 1280) -> image tokens (b, Q·video_length, 1024)
  through a Perceiver over learned latents; VideoCrafter1 has 16 latents shared by all frames,
  DynamiCrafter 16 per frame (video_length 16), frame-major: rows [16t, 16t+16) belong to frame t.
- `image_cross_attention`: the second cross-attention of the spatial attn2 layers, with its own K/V
  (`to_k_ip`, `to_v_ip`) and the text branch's query and output projection; weighted by a fixed λ or by
  1 + tanh(α) with one learned α per layer (DynamiCrafter 256).
- `image_context_per_frame`: DynamiCrafter's context rule (77 + 16·T tokens: frame t sees its own 16).
"""

from __future__ import annotations

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.attention import dot_product_attention
from stylecrafter_jax.models.layers import LayerNorm, dense, gelu, merge_heads, partitioned, split_heads


def image_cross_attention(module: nn.Module, q: jax.Array, image_context: jax.Array, *, heads: int, head_dim: int,
                          learnable: bool, scale: float, multiplier: jax.Array | None, dtype: DTypeLike,
                          attention: str) -> jax.Array:
    """λ·m·softmax(q·k_ipᵀ/√d)·v_ip, heads merged, with `to_k_ip`, `to_v_ip` (and `alpha`) created in `module`.

    q: (n, l, heads, head_dim), the text branch's query; λ = scale, or scale·(1 + tanh(α)) when
    `learnable` (α initialised to 0); `multiplier` (n,) scales the branch per sample (None means 1).
    """
    inner = heads * head_dim
    k, v = (split_heads(dense(inner, ("embed", "heads"), name=name, use_bias=False, dtype=dtype)(image_context),
                        heads) for name in ("to_k_ip", "to_v_ip"))
    out = merge_heads(dot_product_attention(q, k, v, scale=head_dim ** -0.5, implementation=attention))
    weight = jnp.float32(scale)
    if learnable:
        alpha = module.param("alpha", partitioned(nn.initializers.zeros_init(), ()), (), jnp.float32)
        weight = weight * (1.0 + jnp.tanh(alpha))
    if multiplier is not None:
        weight = weight * multiplier.astype(jnp.float32)[:, None, None]
    return out * weight.astype(out.dtype)


def image_context_per_frame(image_context: jax.Array, b: int, t: int, tokens_per_frame: int) -> jax.Array:
    """(b·t, tokens, d) image tokens of each frame.

    (b, t, M, d) is per frame already; (b, tokens_per_frame·t, d) is split frame-major so that frame i
    gets rows [i·tokens_per_frame, (i+1)·tokens_per_frame) (the reference's 77 + 16·T rule); any
    other (b, M, d) is seen whole by every frame.
    """
    if image_context.ndim == 4:
        return einops.rearrange(image_context, "b t m d -> (b t) m d")
    if image_context.shape[1] == tokens_per_frame * t:
        return einops.rearrange(image_context, "b (t m) d -> (b t) m d", t=t)
    return jnp.repeat(image_context, t, axis=0)


class PerceiverAttention(nn.Module):
    """Latents attend to [norm1(x); norm2(latents)]: bias-free to_q, packed to_kv (K columns first), to_out."""

    dim: int = 1024
    dim_head: int = 64
    heads: int = 12
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, latents: jax.Array) -> jax.Array:
        inner = self.heads * self.dim_head
        x = LayerNorm(name="norm1")(x)
        latents = LayerNorm(name="norm2")(latents)
        q = dense(inner, ("embed", "heads"), name="to_q", use_bias=False, dtype=self.dtype)(latents)
        kv = dense(2 * inner, ("embed", "heads"), name="to_kv", use_bias=False, dtype=self.dtype)(
            jnp.concatenate([x, latents], axis=1))
        k, v = jnp.split(kv, 2, axis=-1)
        out = dot_product_attention(*(split_heads(y, self.heads) for y in (q, k, v)), scale=self.dim_head ** -0.5,
                                    implementation=self.attention)
        return dense(self.dim, ("heads", "embed"), name="to_out", use_bias=False, dtype=self.dtype)(merge_heads(out))


class ResamplerFeedForward(nn.Module):
    """LayerNorm (`0`) → bias-free Linear to mult·dim (`1`) → exact GELU → bias-free Linear back (`3`)."""

    dim: int = 1024
    mult: int = 4
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = dense(self.dim * self.mult, ("embed", "mlp"), name="1", use_bias=False, dtype=self.dtype)(
            LayerNorm(name="0")(x))
        return dense(self.dim, ("mlp", "embed"), name="3", use_bias=False, dtype=self.dtype)(gelu(h))


class ResamplerLayer(nn.Module):
    """One `layers.i`: latents + PerceiverAttention (`0`), then latents + FF (`1`)."""

    dim: int = 1024
    dim_head: int = 64
    heads: int = 12
    ff_mult: int = 4
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, latents: jax.Array) -> jax.Array:
        latents = latents + PerceiverAttention(dim=self.dim, dim_head=self.dim_head, heads=self.heads,
                                               dtype=self.dtype, attention=self.attention, name="0")(x, latents)
        return latents + ResamplerFeedForward(dim=self.dim, mult=self.ff_mult, dtype=self.dtype, name="1")(latents)


class Resampler(nn.Module):
    """The image projector: proj_in, `depth` × (PerceiverAttention + FF, both residual on the latents), proj_out, norm_out.

    Takes CLIP image tokens (b, N, embedding_dim) and returns (b, num_queries·video_length, output_dim)
    float32 image tokens.
    """

    dim: int = 1024
    depth: int = 4
    dim_head: int = 64
    heads: int = 12
    num_queries: int = 16
    embedding_dim: int = 1280
    output_dim: int = 1024
    ff_mult: int = 4
    video_length: int = 1
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @property
    def num_tokens(self) -> int:
        """How many image tokens one call returns per sample."""
        return self.num_queries * self.video_length

    @nn.compact
    def __call__(self, image_tokens: jax.Array) -> jax.Array:
        if image_tokens.ndim != 3 or image_tokens.shape[-1] != self.embedding_dim:
            raise ShapeError(f"image_tokens: got shape {image_tokens.shape}, need (b, tokens, {self.embedding_dim})")
        init = lambda key, shape, dtype=jnp.float32: self.dim ** -0.5 * jax.random.normal(key, shape, dtype)  # noqa: E731
        latents = self.param("latents", partitioned(init, (None, None, "embed")), (1, self.num_tokens, self.dim),
                             jnp.float32)
        latents = jnp.broadcast_to(latents, (image_tokens.shape[0],) + latents.shape[1:]).astype(self.dtype)
        x = dense(self.dim, (None, "embed"), name="proj_in", dtype=self.dtype)(image_tokens.astype(self.dtype))
        for i in range(self.depth):
            latents = ResamplerLayer(dim=self.dim, dim_head=self.dim_head, heads=self.heads, ff_mult=self.ff_mult,
                                     dtype=self.dtype, attention=self.attention, name=f"layers_{i}")(x, latents)
        out = dense(self.output_dim, ("embed", None), name="proj_out", dtype=self.dtype)(latents)
        return LayerNorm(name="norm_out")(out).astype(jnp.float32)
