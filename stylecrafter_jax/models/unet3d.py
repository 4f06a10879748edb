"""The VideoCrafter 3D denoising U-Net with pluggable conditioning branches (style, image, VDG, fps).

One module serves VideoCrafter1 T2V with StyleCrafter's style branch, VideoCrafter1 I2V and
DynamiCrafter; its fields select the layers (temporal convs, relative positions, image K/V, fps
embedding, the conv_in width) and a branch a call does not use costs nothing.

`UNet3D.apply({'params': p}, x, timesteps, context, style_scales=None, temporal_mode=None, *,
image_context=None, image_weight=None, concat=None, fps=None)`:
- x: (b, t, h, w, in_channels - concat_channels) latents; timesteps: (b,) or (b, t);
- context: (b, L, context_dim) with L = text_length (+ style tokens), or (b, t, L, context_dim) for
  one context per frame (the reference's image batches);
- style_scales: (b, n_cross) or (b, t, n_cross) multipliers of each layer's style branch, i.e.
  (1 + s_i)·style_weight, 0 to switch style off for a sample; None means 1;
- temporal_mode: "full" (video), "skip" (image model: temporal layers, temporal convs and init_attn
  skipped) or "frame_isolated" (identity temporal mask; each temporal conv sees its frame alone);
  None picks "skip" for t == 1 and "full" otherwise;
- image_context: (b, M, context_dim) projector tokens, split per frame when M = image_tokens_per_frame·t
  (DynamiCrafter's 77 + 16·T rule) and seen whole by every frame otherwise, or (b, t, M, context_dim);
  needs `image_cross_attention`; image_weight: (b,) per-sample multiplier of the image branch (None means 1);
- concat: (b, t or 1, h, w, concat_channels), the clean conditioning latent joined to x on the channel
  axis (DynamiCrafter's visual detail guidance); required when `concat_channels` > 0;
- fps: (b,) frame rate or frame stride of the fps embedding (`fps_condition`); None means `default_fps`.
Returns the prediction (b, t, h, w, out_channels) in float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.image_context import image_context_per_frame
from stylecrafter_jax.models.layers import GroupNorm, conv, dense
from stylecrafter_jax.models.remat import remat
from stylecrafter_jax.models.unet_layers import ACTIVATION_AXES, ZEROS, Downsample, ResBlock, Upsample
from stylecrafter_jax.models.unet_transformers import SpatialTransformer, TemporalTransformer

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
    attn = lambda ch: [  # noqa: E731
        LayerSpec(kind="spatial", channels=ch, heads=ch // num_head_channels, cross_index=next(cross)),
        LayerSpec(kind="temporal", channels=ch, heads=ch // num_head_channels)]
    inputs = [[LayerSpec(kind="conv_in", channels=model_channels)]]
    skip_channels = [model_channels]
    ch, ds = model_channels, 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            ch = model_channels * mult
            inputs.append([LayerSpec(kind="res", channels=ch)] + (attn(ch) if ds in attention_resolutions else []))
            skip_channels.append(ch)
        if level != len(channel_mult) - 1:
            inputs.append([LayerSpec(kind="down", channels=ch)])
            skip_channels.append(ch)
            ds *= 2
    middle = [LayerSpec(kind="res", channels=ch), *attn(ch), LayerSpec(kind="res", channels=ch)]
    outputs = []
    for level, mult in reversed(list(enumerate(channel_mult))):
        for i in range(num_res_blocks + 1):
            skip_channels.pop()
            ch = model_channels * mult
            layers = [LayerSpec(kind="res", channels=ch)] + (attn(ch) if ds in attention_resolutions else [])
            if level and i == num_res_blocks:
                layers.append(LayerSpec(kind="up", channels=ch))
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
    dtype: DTypeLike
    attention: str
    temporal_conv: bool
    relative_position: bool
    image_cross_attention: bool
    image_scale_learnable: bool
    image_scale: float


class UNetBlock(nn.Module):
    """One `input_blocks_i` / `middle_block` / `output_blocks_i`: children named "0", "1", ...

    Spatial children see (b·t, h, w, c); temporal ones (b, t, h, w, c) with t = `num_frames`.
    """

    layers: tuple[LayerSpec, ...]
    num_frames: int
    temporal_mode: str
    settings: BlockSettings

    @nn.compact
    def __call__(self, h: jax.Array, emb: jax.Array, context: jax.Array, style_scales: jax.Array | None,
                 image_context: jax.Array | None = None, image_weight: jax.Array | None = None) -> jax.Array:
        u = self.settings
        conv_frames = {"full": self.num_frames, "frame_isolated": 1, "skip": None}[self.temporal_mode]
        for index, spec in enumerate(self.layers):
            name = str(index)
            if spec.kind == "conv_in":
                h = conv(spec.channels, 3, name=name, dtype=u.dtype)(h)
            elif spec.kind == "res":
                h = ResBlock(out_channels=spec.channels, norm_groups=u.norm_groups, dtype=u.dtype,
                             temporal_conv=u.temporal_conv, name=name)(h, emb, conv_frames)
            elif spec.kind == "down":
                h = Downsample(channels=spec.channels, dtype=u.dtype, name=name)(h)
            elif spec.kind == "up":
                h = Upsample(channels=spec.channels, dtype=u.dtype, name=name)(h)
            elif spec.kind == "spatial":
                multiplier = None if style_scales is None else style_scales[:, spec.cross_index]
                h = SpatialTransformer(heads=spec.heads, head_dim=u.head_dim, text_length=u.text_length,
                                       with_style=u.style_adapter, style_scaled=u.style_attention_scaled,
                                       norm_groups=u.norm_groups, dtype=u.dtype, attention=u.attention,
                                       with_image=u.image_cross_attention,
                                       image_scale_learnable=u.image_scale_learnable, image_scale=u.image_scale,
                                       name=name)(h, context, multiplier, image_context, image_weight)
            elif self.temporal_mode != "skip" or self.is_initializing():
                h = apply_temporal(temporal_transformer(u, spec.heads, u.head_dim, name), h, self.num_frames,
                                   self.temporal_mode)
        return nn.with_logical_constraint(h, ACTIVATION_AXES)


def temporal_transformer(settings: BlockSettings, heads: int, head_dim: int, name: str) -> TemporalTransformer:
    """A TemporalTransformer with the U-Net's relative-position setting, norms, dtype and kernel."""
    return TemporalTransformer(heads=heads, head_dim=head_dim, max_distance=settings.temporal_max_distance,
                               norm_groups=settings.norm_groups, dtype=settings.dtype,
                               relative_position=settings.relative_position, attention=settings.attention,
                               name=name)


def apply_temporal(layer: TemporalTransformer, h: jax.Array, num_frames: int, mode: str) -> jax.Array:
    """Run a temporal transformer on (b·t, h, w, c) features by viewing them as (b, t, h, w, c)."""
    out = layer(einops.rearrange(h, "(b t) h w c -> b t h w c", t=num_frames), mode == "frame_isolated")
    return einops.rearrange(out, "b t h w c -> (b t) h w c")


class UNet3D(nn.Module):
    """VideoCrafter's U-Net (openaimodel3d.UNetModel) with optional style, image, VDG and fps branches."""

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
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"
    remat_policy: str = "none"
    temporal_conv: bool = False
    relative_position: bool = True
    concat_channels: int = 0
    fps_condition: bool = False
    fps_zero_init: bool = False
    default_fps: int = 16
    image_cross_attention: bool = False
    image_scale_learnable: bool = False
    image_scale: float = 1.0
    image_tokens_per_frame: int = 16

    @property
    def num_cross_attention_layers(self) -> int:
        """How many spatial cross-attention layers (style-scale slots) the layout has."""
        blocks = block_layout(self.model_channels, self.channel_mult, self.num_res_blocks,
                              self.attention_resolutions, self.num_head_channels)
        return sum(spec.kind == "spatial" for block in (*blocks[0], blocks[1], *blocks[2]) for spec in block)

    @nn.compact
    def __call__(self, x: jax.Array, timesteps: jax.Array, context: jax.Array,
                 style_scales: jax.Array | None = None, temporal_mode: str | None = None, *,
                 image_context: jax.Array | None = None, image_weight: jax.Array | None = None,
                 concat: jax.Array | None = None, fps: jax.Array | None = None) -> jax.Array:
        b, t, _, _, _ = self._check_inputs(x, timesteps, context, style_scales, temporal_mode)
        self._check_branches(x, image_context, image_weight, concat, fps)
        mode = temporal_mode or ("skip" if t == 1 else "full")
        inputs, middle, outputs = block_layout(self.model_channels, self.channel_mult, self.num_res_blocks,
                                               self.attention_resolutions, self.num_head_channels)
        emb = self._embedding(per_frame(timesteps, b, t, 1), fps, b, t)
        context = per_frame(context, b, t, 3).astype(self.dtype)
        scales = None if style_scales is None else per_frame(style_scales, b, t, 2)
        image = None
        if image_context is not None:
            image = image_context_per_frame(image_context, b, t, self.image_tokens_per_frame).astype(self.dtype)
        image_weight = None if image_weight is None else jnp.repeat(jnp.broadcast_to(image_weight, (b,)), t)

        settings = BlockSettings(
            norm_groups=self.norm_groups, head_dim=self.num_head_channels, text_length=self.text_length,
            style_adapter=self.style_adapter, style_attention_scaled=self.style_attention_scaled,
            temporal_max_distance=self.temporal_max_distance, dtype=self.dtype, attention=self.attention,
            temporal_conv=self.temporal_conv, relative_position=self.relative_position,
            image_cross_attention=self.image_cross_attention, image_scale_learnable=self.image_scale_learnable,
            image_scale=self.image_scale)
        block_cls = remat(UNetBlock, self.remat_policy)
        make = lambda layers, name: block_cls(  # noqa: E731
            layers=tuple(layers), num_frames=t, temporal_mode=mode, settings=settings, name=name)
        if concat is not None:
            x = jnp.concatenate([x, jnp.broadcast_to(concat, x.shape[:-1] + concat.shape[-1:]).astype(x.dtype)],
                                axis=-1)
        h = einops.rearrange(x, "b t h w c -> (b t) h w c").astype(self.dtype)
        skips = []
        for i, layers in enumerate(inputs):
            h = make(layers, f"input_blocks_{i}")(h, emb, context, scales, image, image_weight)
            if i == 0 and self.addition_attention and (mode != "skip" or self.is_initializing()):
                init_attn = temporal_transformer(settings, self.init_attn_heads, self.init_attn_head_dim,
                                                 "init_attn_0")
                h = apply_temporal(init_attn, h, t, mode)
            skips.append(h)
        h = make(middle, "middle_block")(h, emb, context, scales, image, image_weight)
        for i, layers in enumerate(outputs):
            h = make(layers, f"output_blocks_{i}")(jnp.concatenate([h, skips.pop()], axis=-1), emb, context,
                                                   scales, image, image_weight)
        h = nn.silu(GroupNorm(num_groups=self.norm_groups, epsilon=1e-5, name="out_0")(h))
        h = conv(self.out_channels, 3, name="out_2", dtype=self.dtype, kernel_init=ZEROS)(h)
        return einops.rearrange(h, "(b t) h w c -> b t h w c", b=b).astype(jnp.float32)

    def _embedding(self, timesteps: jax.Array, fps: jax.Array | None, b: int, t: int) -> jax.Array:
        """time_embed(sinusoid(t)) per frame, plus fps_embedding(sinusoid(fps)) when `fps_condition`."""
        emb_dim = self.model_channels * 4
        emb = timestep_embedding(timesteps, self.model_channels)
        emb = dense(emb_dim, ("embed", "mlp"), name="time_embed_0", dtype=self.dtype)(emb)
        emb = dense(emb_dim, ("mlp", "embed"), name="time_embed_2", dtype=self.dtype)(nn.silu(emb))
        if not self.fps_condition:
            return emb
        fps = jnp.full((b,), self.default_fps, jnp.int32) if fps is None else jnp.broadcast_to(fps, (b,))
        f = timestep_embedding(jnp.repeat(fps, t), self.model_channels)
        f = dense(emb_dim, ("embed", "mlp"), name="fps_embedding_0", dtype=self.dtype)(f)
        last_init = ZEROS if self.fps_zero_init else nn.initializers.lecun_normal()
        f = dense(emb_dim, ("mlp", "embed"), name="fps_embedding_2", dtype=self.dtype, kernel_init=last_init)(
            nn.silu(f))
        return emb + f

    def _check_inputs(self, x, timesteps, context, style_scales, temporal_mode) -> tuple[int, ...]:
        """Raise ShapeError naming the argument, the shape it got and the shape it needs."""
        factor = 2 ** (len(self.channel_mult) - 1)
        channels = self.in_channels - self.concat_channels
        if x.ndim != 5 or x.shape[-1] != channels:
            raise ShapeError(f"x: got shape {x.shape}, need (b, t, h, w, {channels})")
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

    def _check_branches(self, x, image_context, image_weight, concat, fps) -> None:
        """Raise ShapeError naming a conditioning input the U-Net lacks, or one of the wrong shape."""
        b, t, height, width, _ = x.shape
        if image_context is not None:
            if not self.image_cross_attention:
                raise ShapeError("image_context: this U-Net has no image cross-attention (image_cross_attention "
                                 "is False); pass None")
            if (image_context.ndim not in (3, 4) or image_context.shape[0] != b
                    or (image_context.ndim == 4 and image_context.shape[1] != t)
                    or image_context.shape[-1] != self.context_dim):
                raise ShapeError(f"image_context: got shape {image_context.shape}, need ({b}, [{t},] tokens, "
                                 f"{self.context_dim})")
        if image_weight is not None and (image_context is None or jnp.shape(image_weight) not in ((), (b,))):
            raise ShapeError(f"image_weight: got shape {jnp.shape(image_weight)}, need () or ({b},) together "
                             f"with image_context")
        cc = self.concat_channels
        if cc and (concat is None or concat.ndim != 5 or concat.shape[0] != b or concat.shape[1] not in (1, t)
                   or concat.shape[2:] != (height, width, cc)):
            got = None if concat is None else concat.shape
            raise ShapeError(f"concat: got {got}, need ({b}, {t} or 1, {height}, {width}, {cc}): the conditioning "
                             f"latent of visual detail guidance")
        if not cc and concat is not None:
            raise ShapeError("concat: this U-Net takes no conditioning latent (concat_channels is 0); pass None")
        if fps is not None and not self.fps_condition:
            raise ShapeError("fps: this U-Net has no fps embedding (fps_condition is False); pass None")
        if fps is not None and jnp.shape(fps) not in ((), (b,)):
            raise ShapeError(f"fps: got shape {jnp.shape(fps)}, need () or ({b},)")


def per_frame(value: jax.Array, b: int, t: int, sample_rank: int) -> jax.Array:
    """Flatten a per-frame (b, t, ...) value to (b·t, ...) or repeat a per-sample (b, ...) one t times."""
    if value.ndim == sample_rank + 1:
        return einops.rearrange(value, "b t ... -> (b t) ...", b=b, t=t)
    return jnp.repeat(value, t, axis=0)
