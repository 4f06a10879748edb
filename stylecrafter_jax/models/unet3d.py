"""The VideoCrafter1 3D denoising U-Net with StyleCrafter dual cross-attention.

`UNet3D.apply({'params': p}, x, timesteps, context, style_scales=None, temporal_mode=None)`:
- x: (b, t, h, w, in_channels) latents; timesteps: (b,) or (b, t);
- context: (b, L, context_dim) with L = text_length (+ style tokens), or (b, t, L, context_dim) for
  one context per frame (the reference's image batches);
- style_scales: (b, n_cross) or (b, t, n_cross) multipliers of each layer's style branch, i.e.
  (1 + s_i)·style_weight, 0 to switch style off for a sample; None means 1;
- temporal_mode: "full" (video), "skip" (image model: temporal layers and init_attn skipped) or
  "frame_isolated" (identity temporal mask); None picks "skip" for t == 1 and "full" otherwise.
Returns the eps prediction (b, t, h, w, out_channels) in float32.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.layers import GroupNorm, conv, dense
from stylecrafter_jax.models.remat import remat
from stylecrafter_jax.models.unet_layers import ACTIVATION_AXES, ZEROS, Downsample, ResBlock, Upsample
from stylecrafter_jax.models.unet_transformers import SpatialTransformer, TemporalTransformer

Dtype = Any
TEMPORAL_MODES = ("full", "skip", "frame_isolated")


class LayerSpec(NamedTuple):
    """One child of a U-Net block: its kind, width, heads and (for spatial) cross-attention index."""

    kind: str  # "conv_in" | "res" | "spatial" | "temporal" | "down" | "up"
    channels: int
    heads: int = 0
    cross_index: int = -1


def timestep_embedding(timesteps: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding [cos(t·f), sin(t·f)] (cos first), f_i = exp(-ln(max_period)·i/half)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = timesteps.astype(jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def block_layout(model_channels: int, channel_mult: tuple[int, ...], num_res_blocks: int,
                 attention_resolutions: tuple[int, ...], num_head_channels: int
                 ) -> tuple[list[list[LayerSpec]], list[LayerSpec], list[list[LayerSpec]]]:
    """The input, middle and output block layouts of openaimodel3d.UNetModel."""
    cross = iter(range(10_000))
    attn = lambda ch: [LayerSpec("spatial", ch, ch // num_head_channels, next(cross)),  # noqa: E731
                       LayerSpec("temporal", ch, ch // num_head_channels)]
    inputs = [[LayerSpec("conv_in", model_channels)]]
    skip_channels = [model_channels]
    ch, ds = model_channels, 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            ch = model_channels * mult
            inputs.append([LayerSpec("res", ch)] + (attn(ch) if ds in attention_resolutions else []))
            skip_channels.append(ch)
        if level != len(channel_mult) - 1:
            inputs.append([LayerSpec("down", ch)])
            skip_channels.append(ch)
            ds *= 2
    middle = [LayerSpec("res", ch), *attn(ch), LayerSpec("res", ch)]
    outputs = []
    for level, mult in reversed(list(enumerate(channel_mult))):
        for i in range(num_res_blocks + 1):
            skip_channels.pop()
            ch = model_channels * mult
            layers = [LayerSpec("res", ch)] + (attn(ch) if ds in attention_resolutions else [])
            if level and i == num_res_blocks:
                layers.append(LayerSpec("up", ch))
                ds //= 2
            outputs.append(layers)
    return inputs, middle, outputs


class BlockSettings(NamedTuple):
    """The U-Net-wide hyperparameters every block needs."""

    norm_groups: int
    head_dim: int
    text_length: int
    style_adapter: bool
    style_attention_scaled: bool
    temporal_max_distance: int
    dtype: Dtype
    attention: str


class UNetBlock(nn.Module):
    """One `input_blocks_i` / `middle_block` / `output_blocks_i`: children named "0", "1", ...

    Spatial children see (b·t, h, w, c); temporal ones (b, t, h, w, c) with t = `num_frames`.
    """

    layers: tuple[LayerSpec, ...]
    num_frames: int
    temporal_mode: str
    settings: BlockSettings

    @nn.compact
    def __call__(self, h: jax.Array, emb: jax.Array, context: jax.Array,
                 style_scales: jax.Array | None) -> jax.Array:
        u = self.settings
        for index, spec in enumerate(self.layers):
            name = str(index)
            if spec.kind == "conv_in":
                h = conv(spec.channels, 3, name=name, dtype=u.dtype)(h)
            elif spec.kind == "res":
                h = ResBlock(spec.channels, u.norm_groups, u.dtype, name=name)(h, emb)
            elif spec.kind == "down":
                h = Downsample(spec.channels, u.dtype, name=name)(h)
            elif spec.kind == "up":
                h = Upsample(spec.channels, u.dtype, name=name)(h)
            elif spec.kind == "spatial":
                multiplier = None if style_scales is None else style_scales[:, spec.cross_index]
                h = SpatialTransformer(spec.heads, u.head_dim, u.text_length, u.style_adapter,
                                       u.style_attention_scaled, u.norm_groups, u.dtype, u.attention,
                                       name=name)(h, context, multiplier)
            elif self.temporal_mode != "skip" or self.is_initializing():
                h = apply_temporal(TemporalTransformer(spec.heads, u.head_dim, u.temporal_max_distance,
                                                       u.norm_groups, u.dtype, name=name),
                                   h, self.num_frames, self.temporal_mode)
        return nn.with_logical_constraint(h, ACTIVATION_AXES)


def apply_temporal(layer: TemporalTransformer, h: jax.Array, num_frames: int, mode: str) -> jax.Array:
    """Run a temporal transformer on (b·t, h, w, c) features by viewing them as (b, t, h, w, c)."""
    n, height, width, c = h.shape
    out = layer(h.reshape(n // num_frames, num_frames, height, width, c), mode == "frame_isolated")
    return out.reshape(n, height, width, c)


class UNet3D(nn.Module):
    """VideoCrafter1 T2V U-Net (openaimodel3d.UNetModel) with optional StyleCrafter style branches."""

    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_head_channels: int = 64
    context_dim: int = 1024
    text_length: int = 77
    temporal_max_distance: int = 16
    addition_attention: bool = True
    init_attn_heads: int = 8
    init_attn_head_dim: int = 64
    norm_groups: int = 32
    style_adapter: bool = True
    style_attention_scaled: bool = True
    dtype: Dtype = jnp.float32
    attention: str = "xla"
    remat_policy: str = "none"

    @property
    def num_cross_attention_layers(self) -> int:
        """How many spatial cross-attention layers (style-scale slots) the layout has."""
        blocks = block_layout(self.model_channels, self.channel_mult, self.num_res_blocks,
                              self.attention_resolutions, self.num_head_channels)
        return sum(spec.kind == "spatial" for block in (*blocks[0], blocks[1], *blocks[2]) for spec in block)

    @nn.compact
    def __call__(self, x: jax.Array, timesteps: jax.Array, context: jax.Array,
                 style_scales: jax.Array | None = None, temporal_mode: str | None = None) -> jax.Array:
        b, t, height, width, _ = self._check_inputs(x, timesteps, context, style_scales, temporal_mode)
        mode = temporal_mode or ("skip" if t == 1 else "full")
        inputs, middle, outputs = block_layout(self.model_channels, self.channel_mult, self.num_res_blocks,
                                               self.attention_resolutions, self.num_head_channels)
        emb_dim = self.model_channels * 4
        emb = timestep_embedding(per_frame(timesteps, b, t, 1), self.model_channels)
        emb = dense(emb_dim, ("embed", "mlp"), name="time_embed_0", dtype=self.dtype)(emb)
        emb = dense(emb_dim, ("mlp", "embed"), name="time_embed_2", dtype=self.dtype)(nn.silu(emb))
        context = per_frame(context, b, t, 3).astype(self.dtype)
        scales = None if style_scales is None else per_frame(style_scales, b, t, 2)

        settings = BlockSettings(self.norm_groups, self.num_head_channels, self.text_length, self.style_adapter,
                                 self.style_attention_scaled, self.temporal_max_distance, self.dtype,
                                 self.attention)
        block_cls = remat(UNetBlock, self.remat_policy)
        make = lambda layers, name: block_cls(tuple(layers), t, mode, settings, name=name)  # noqa: E731
        h = x.reshape(b * t, height, width, x.shape[-1]).astype(self.dtype)
        skips = []
        for i, layers in enumerate(inputs):
            h = make(layers, f"input_blocks_{i}")(h, emb, context, scales)
            if i == 0 and self.addition_attention and (mode != "skip" or self.is_initializing()):
                init_attn = TemporalTransformer(self.init_attn_heads, self.init_attn_head_dim,
                                                self.temporal_max_distance, self.norm_groups, self.dtype,
                                                name="init_attn_0")
                h = apply_temporal(init_attn, h, t, mode)
            skips.append(h)
        h = make(middle, "middle_block")(h, emb, context, scales)
        for i, layers in enumerate(outputs):
            h = make(layers, f"output_blocks_{i}")(jnp.concatenate([h, skips.pop()], axis=-1), emb, context,
                                                   scales)
        h = nn.silu(GroupNorm(self.norm_groups, 1e-5, name="out_0")(h))
        h = conv(self.out_channels, 3, name="out_2", dtype=self.dtype, kernel_init=ZEROS)(h)
        return h.reshape(b, t, height, width, self.out_channels).astype(jnp.float32)

    def _check_inputs(self, x, timesteps, context, style_scales, temporal_mode) -> tuple[int, ...]:
        """Raise ShapeError naming the argument, the shape it got and the shape it needs."""
        factor = 2 ** (len(self.channel_mult) - 1)
        if x.ndim != 5 or x.shape[-1] != self.in_channels:
            raise ShapeError(f"x: got shape {x.shape}, need (b, t, h, w, {self.in_channels})")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ShapeError(f"x: got dtype {x.dtype}, need a floating dtype")
        b, t, height, width, _ = x.shape
        if height % factor or width % factor:
            raise ShapeError(f"x: got spatial size {height}x{width}, need both divisible by {factor}")
        if timesteps.shape not in ((b,), (b, t)):
            raise ShapeError(f"timesteps: got shape {timesteps.shape}, need ({b},) or ({b}, {t})")
        frames = (t,) if context.ndim == 4 else ()
        if (context.ndim not in (3, 4) or context.shape[:1] + context.shape[1:1 + len(frames)] != (b, *frames)
                or context.shape[-1] != self.context_dim or context.shape[-2] < self.text_length):
            raise ShapeError(f"context: got shape {context.shape}, need ({b}, [{t},] L >= {self.text_length}, "
                             f"{self.context_dim})")
        n_cross = self.num_cross_attention_layers
        if style_scales is not None and style_scales.shape not in ((b, n_cross), (b, t, n_cross)):
            raise ShapeError(f"style_scales: got shape {style_scales.shape}, need ({b}, {n_cross}) or "
                             f"({b}, {t}, {n_cross}): one multiplier per cross-attention layer")
        if temporal_mode is not None and temporal_mode not in TEMPORAL_MODES:
            raise ShapeError(f"temporal_mode: got {temporal_mode!r}, need one of {TEMPORAL_MODES}")
        return x.shape


def per_frame(value: jax.Array, b: int, t: int, sample_rank: int) -> jax.Array:
    """Flatten a per-frame (b, t, ...) value to (b·t, ...) or repeat a per-sample (b, ...) one t times."""
    if value.ndim == sample_rank + 1:
        return value.reshape((b * t,) + value.shape[2:])
    return jnp.repeat(value, t, axis=0)
