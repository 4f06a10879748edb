"""DINO ViT (Hugging Face `ViTModel` layout, e.g. `facebook/dino-vitb16`) returning CLS features.

Parameter names mirror the transformers state dict with the project's renaming (`encoder.layer.3.x`
→ `encoder/layer_3/x`, `weight` → `kernel`/`scale`): `embeddings/{cls_token, position_embeddings,
patch_embeddings/projection}`, `encoder/layer_i/{layernorm_before, attention/attention/{query,key,value},
attention/output/dense, layernorm_after, intermediate/dense, output/dense}`, `layernorm`. The pooler
(dense + tanh, not part of the DINO backbone and absent from `facebook/dino-vitb16`) is not built.
"""

from __future__ import annotations

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.attention import dot_product_attention
from stylecrafter_jax.models.layers import LayerNorm, conv, dense, gelu, merge_heads, partitioned, split_heads

_TRUNCATED_NORMAL_STD = 0.02


class _Dense(nn.Module):
    """A module holding one linear layer named `dense` (HF's ViTSelfOutput/ViTIntermediate/ViTOutput)."""

    features: int
    axes: tuple[str | None, str | None]
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return dense(self.features, self.axes, name="dense", dtype=self.dtype)(x)


class _SelfAttention(nn.Module):
    """Multi-head self-attention with biased query/key/value projections (HF ViTSelfAttention)."""

    hidden_size: int
    num_heads: int
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        head_dim = self.hidden_size // self.num_heads
        q, k, v = (split_heads(dense(self.hidden_size, ("embed", "heads"), name=n, dtype=self.dtype)(x),
                               self.num_heads) for n in ("query", "key", "value"))
        return merge_heads(dot_product_attention(q, k, v, scale=head_dim ** -0.5, implementation=self.attention))


class _Attention(nn.Module):
    """Self-attention followed by its output projection (HF ViTAttention)."""

    hidden_size: int
    num_heads: int
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _SelfAttention(hidden_size=self.hidden_size, num_heads=self.num_heads, dtype=self.dtype,
                           attention=self.attention, name="attention")(x)
        return _Dense(features=self.hidden_size, axes=("heads", "embed"), dtype=self.dtype, name="output")(x)


class _Layer(nn.Module):
    """Pre-LN block: x + attention(layernorm_before(x)), then h + output(gelu(intermediate(layernorm_after(h))))."""

    hidden_size: int
    num_heads: int
    intermediate_size: int
    layer_norm_eps: float
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        normed = LayerNorm(epsilon=self.layer_norm_eps, name="layernorm_before")(x).astype(self.dtype)
        x = x + _Attention(hidden_size=self.hidden_size, num_heads=self.num_heads, dtype=self.dtype,
                           attention=self.attention, name="attention")(normed)
        normed = LayerNorm(epsilon=self.layer_norm_eps, name="layernorm_after")(x).astype(self.dtype)
        hidden = gelu(_Dense(features=self.intermediate_size, axes=("embed", "mlp"), dtype=self.dtype,
                             name="intermediate")(normed))
        return x + _Dense(features=self.hidden_size, axes=("mlp", "embed"), dtype=self.dtype, name="output")(hidden)


class _Encoder(nn.Module):
    """The stack of `num_layers` blocks named `layer_{i}`."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    layer_norm_eps: float
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.num_layers):
            x = _Layer(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                       layer_norm_eps=self.layer_norm_eps, dtype=self.dtype, attention=self.attention,
                       name=f"layer_{i}")(x)
        return x


class _PatchEmbeddings(nn.Module):
    """Non-overlapping patch projection (a strided conv named `projection`)."""

    hidden_size: int
    patch_size: int
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, pixels: jax.Array) -> jax.Array:
        patches = conv(self.hidden_size, self.patch_size, stride=self.patch_size, padding="VALID", dtype=self.dtype,
                       name="projection")(pixels.astype(self.dtype))
        return einops.rearrange(patches, "b h w c -> b (h w) c")


class _Embeddings(nn.Module):
    """[CLS] + patch embeddings, plus learned position embeddings (no interpolation: fixed image size)."""

    hidden_size: int
    patch_size: int
    num_patches: int
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, pixels: jax.Array) -> jax.Array:
        init = nn.initializers.truncated_normal(_TRUNCATED_NORMAL_STD)
        cls_token = self.param("cls_token", partitioned(init, (None, None, "embed")), (1, 1, self.hidden_size),
                               jnp.float32)
        positions = self.param("position_embeddings", partitioned(init, (None, None, "embed")),
                               (1, self.num_patches + 1, self.hidden_size), jnp.float32)
        patches = _PatchEmbeddings(hidden_size=self.hidden_size, patch_size=self.patch_size, dtype=self.dtype,
                                   name="patch_embeddings")(pixels)
        cls = jnp.broadcast_to(cls_token, (pixels.shape[0], 1, self.hidden_size))
        return jnp.concatenate([cls, patches.astype(jnp.float32)], axis=1) + positions


class DinoViT(nn.Module):
    """The DINO ViT backbone; defaults are ViT-B/16 at 224 (`facebook/dino-vitb16`).

    `__call__(pixels (B, image_size, image_size, 3), ImageNet-normalised)` returns
    (CLS features (B, hidden_size), last_hidden_state (B, 1 + patches, hidden_size)), both float32
    and after the final `layernorm`, as `ViTModel(...).last_hidden_state` gives them.
    `layer_norm_eps` is transformers' ViT default 1e-12, which the converted DINO checkpoints use
    (the original DINO code uses 1e-6; the difference is far below the metric's resolution).
    """

    image_size: int = 224
    patch_size: int = 16
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    layer_norm_eps: float = 1e-12
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, pixels: jax.Array) -> tuple[jax.Array, jax.Array]:
        expected = (self.image_size, self.image_size, 3)
        if pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise ShapeError(f"DINO pixels: expected shape (batch, {', '.join(map(str, expected))}), "
                             f"got {pixels.shape}")
        dtype = jnp.dtype(self.dtype)
        num_patches = (self.image_size // self.patch_size) ** 2
        x = _Embeddings(hidden_size=self.hidden_size, patch_size=self.patch_size, num_patches=num_patches, dtype=dtype,
                        name="embeddings")(pixels)
        x = _Encoder(hidden_size=self.hidden_size, num_layers=self.num_layers, num_heads=self.num_heads,
                     intermediate_size=self.intermediate_size, layer_norm_eps=self.layer_norm_eps, dtype=dtype,
                     attention=self.attention, name="encoder")(x.astype(dtype))
        hidden = LayerNorm(epsilon=self.layer_norm_eps, name="layernorm")(x).astype(jnp.float32)
        return hidden[:, 0], hidden
