"""OpenCLIP ViT-H/14 towers: the text tower (penultimate-layer context) and the vision tower (257 tokens).

Parameter names mirror open_clip (`token_embedding`, `positional_embedding`, `transformer/resblocks_i/...`,
`ln_final`, `text_projection`, `logit_scale`; `conv1`, `class_embedding`, `positional_embedding`, `ln_pre`,
`ln_post`, `proj`), so the official weights import by renaming and transposing only.
"""

from __future__ import annotations

import math
import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from stylecrafter_jax.errors import ConfigError, ShapeError
from stylecrafter_jax.models.layers import LayerNorm, conv, partitioned
from stylecrafter_jax.models.transformer import Transformer

TOKEN_OUTPUTS = ("style", "raw")


def _normal(std: float) -> nn.initializers.Initializer:
    return nn.initializers.normal(stddev=std)


class OpenCLIPTextTower(nn.Module):
    """open_clip's text transformer (causal, pre-LN, exact GELU) with two outputs.

    `__call__(tokens (B, context_length) int)` returns
    - the U-Net context (B, context_length, width): `ln_final` of the output of block `layers - 1`
      (the "penultimate" layer, 23 of 24 blocks at full size), every position kept;
    - the pooled, projected text embedding (B, embed_dim): `ln_final` of the last block at the
      end-of-text token (the argmax id), times `text_projection`.
    Both are float32. Under jit, a caller that uses only the context never runs the last block.
    `logit_scale` is stored (the checkpoints carry it) but unused.
    """

    vocab_size: int = 49408
    context_length: int = 77
    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp_ratio: float = 4.0
    embed_dim: int = 1024
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"
    remat_policy: str = "none"

    @nn.compact
    def __call__(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
            raise ShapeError(f"text tokens: expected shape (batch, {self.context_length}), got {tokens.shape}")
        dtype = jnp.dtype(self.dtype)
        embed = nn.Embed(num_embeddings=self.vocab_size, features=self.width, param_dtype=jnp.float32,
                         name="token_embedding", embedding_init=partitioned(_normal(0.02), ("vocab", "embed")))
        positional = self.param("positional_embedding", partitioned(_normal(0.01), (None, "embed")),
                                (self.context_length, self.width), jnp.float32)
        self.param("logit_scale", partitioned(nn.initializers.constant(math.log(1 / 0.07)), ()), (), jnp.float32)
        projection = self.param("text_projection", partitioned(_normal(self.width ** -0.5), ("embed", None)),
                                (self.width, self.embed_dim), jnp.float32)
        causal = jnp.tril(jnp.ones((self.context_length, self.context_length), bool))[None, None]
        transformer = Transformer(width=self.width, layers=self.layers, heads=self.heads, mlp_ratio=self.mlp_ratio,
                                  dtype=dtype, attention=self.attention, remat_policy=self.remat_policy,
                                  name="transformer")
        ln_final = LayerNorm(name="ln_final")

        x = (embed(tokens) + positional).astype(dtype)
        penultimate = transformer(x, causal, num_layers=self.layers - 1)
        context = ln_final(penultimate).astype(jnp.float32)
        last = ln_final(transformer(penultimate, causal, first_layer=self.layers - 1)).astype(jnp.float32)
        eot = last[jnp.arange(tokens.shape[0]), jnp.argmax(tokens, axis=-1)]
        pooled = jnp.matmul(eot, projection, precision=jax.lax.Precision.HIGHEST)
        return context, pooled


class OpenCLIPVisionTower(nn.Module):
    """open_clip's ViT (patch conv, class token, pre-LN blocks, exact GELU) with two outputs.

    `__call__(pixels (B, image_size, image_size, 3), CLIP-normalised)` returns
    - the tokens (B, 1 + patches, width), rounded to float16 and back to float32 when `round_to_fp16`
      (as StyleCrafter's `.half()` does): with `token_output` "style" (StyleCrafter's embedder)
      `ln_post(CLS)` followed by the raw patch tokens of the last block; with "raw"
      (`FrozenOpenCLIPImageEmbedderV2` of VideoCrafter1 I2V and DynamiCrafter) all tokens of the last
      block as they are, CLS included;
    - the projected image embedding (B, embed_dim): `ln_post(CLS) @ proj`, float32, not rounded.
    """

    image_size: int = 224
    patch_size: int = 14
    width: int = 1280
    layers: int = 32
    heads: int = 16
    mlp_ratio: float = 4.0
    embed_dim: int = 1024
    round_to_fp16: bool = True
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"
    remat_policy: str = "none"
    token_output: str = "style"

    @nn.compact
    def __call__(self, pixels: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.token_output not in TOKEN_OUTPUTS:
            raise ConfigError(f"token_output {self.token_output!r}: expected one of {TOKEN_OUTPUTS}")
        expected = (self.image_size, self.image_size, 3)
        if pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise ShapeError(f"style pixels: expected shape (batch, {', '.join(map(str, expected))}), "
                             f"got {pixels.shape}")
        dtype = jnp.dtype(self.dtype)
        grid = self.image_size // self.patch_size
        scale = self.width ** -0.5
        class_embedding = self.param("class_embedding", partitioned(_normal(scale), ("embed",)), (self.width,),
                                     jnp.float32)
        positional = self.param("positional_embedding", partitioned(_normal(scale), (None, "embed")),
                                (grid * grid + 1, self.width), jnp.float32)
        projection = self.param("proj", partitioned(_normal(scale), ("embed", None)), (self.width, self.embed_dim),
                                jnp.float32)

        patches = conv(self.width, self.patch_size, stride=self.patch_size, padding="VALID", use_bias=False,
                       dtype=dtype, name="conv1")(pixels.astype(dtype))
        patches = einops.rearrange(patches, "b h w c -> b (h w) c").astype(jnp.float32)
        cls = jnp.broadcast_to(class_embedding, (pixels.shape[0], 1, self.width))
        x = jnp.concatenate([cls, patches], axis=1) + positional
        x = LayerNorm(name="ln_pre")(x).astype(dtype)
        x = Transformer(width=self.width, layers=self.layers, heads=self.heads, mlp_ratio=self.mlp_ratio, dtype=dtype,
                        attention=self.attention, remat_policy=self.remat_policy,
                        name="transformer")(x).astype(jnp.float32)
        pooled = LayerNorm(name="ln_post")(x[:, 0])
        tokens = jnp.concatenate([pooled[:, None], x[:, 1:]], axis=1) if self.token_output == "style" else x
        if self.round_to_fp16:
            tokens = tokens.astype(jnp.float16).astype(jnp.float32)
        return tokens, jnp.matmul(pooled, projection, precision=jax.lax.Precision.HIGHEST)
