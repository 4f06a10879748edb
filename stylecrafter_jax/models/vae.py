"""The KL-f8 autoencoder of LDM/VideoCrafter (`first_stage_model`), channels-last, per-frame on videos.

Parameter names mirror the official keys: `encoder/down_0/block_0/norm1`, `encoder/down_0/downsample/conv`,
`encoder/mid/attn_1/q`, `decoder/up_3/upsample/conv`, `quant_conv`, ... The mid-block attention's 1x1
convolutions q, k, v and proj_out are Dense layers (same maths on NHWC).
"""

from __future__ import annotations

from typing import Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.attention import dot_product_attention
from stylecrafter_jax.models.layers import GroupNorm, conv, dense

LATENT_SCALE = 0.18215
LOGVAR_RANGE = (-30.0, 20.0)
_GN_EPS = 1e-6


def _norm(name: str) -> GroupNorm:
    return GroupNorm(num_groups=32, epsilon=_GN_EPS, name=name)


class ResnetBlock(nn.Module):
    """GN → SiLU → conv3x3 → GN → SiLU → conv3x3, plus the input (through a 1x1 `nin_shortcut` if widths differ)."""

    out_channels: int
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = conv(self.out_channels, 3, dtype=self.dtype, name="conv1")(nn.silu(_norm("norm1")(x)))
        h = conv(self.out_channels, 3, dtype=self.dtype, name="conv2")(nn.silu(_norm("norm2")(h)))
        if x.shape[-1] != self.out_channels:
            x = conv(self.out_channels, 1, dtype=self.dtype, name="nin_shortcut")(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H·W positions with scale C^-1/2, plus the input."""

    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        normed = einops.rearrange(_norm("norm")(x), "b h w c -> b (h w) 1 c")
        q, k, v = (dense(c, ("conv_in", "conv_out"), name=n, dtype=self.dtype)(normed) for n in ("q", "k", "v"))
        out = dot_product_attention(q, k, v, scale=c ** -0.5, implementation=self.attention)
        out = dense(c, ("conv_in", "conv_out"), name="proj_out", dtype=self.dtype)(
            einops.rearrange(out, "b l 1 c -> b l c"))
        return x + einops.rearrange(out, "b (h w) c -> b h w c", h=h)


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then conv3x3 with stride 2 (the reference's asymmetric padding)."""

    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return conv(x.shape[-1], 3, stride=2, padding=((0, 1), (0, 1)), dtype=self.dtype, name="conv")(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 (each pixel repeated 2x2), then conv3x3."""

    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = einops.repeat(x, "b h w c -> b (h 2) (w 2) c")
        return conv(x.shape[-1], 3, dtype=self.dtype, name="conv")(x)


class Level(nn.Module):
    """One resolution level: `blocks` ResnetBlocks (`block_i`), then `resample` "down", "up" or "none"."""

    out_channels: int
    blocks: int
    resample: str
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.blocks):
            x = ResnetBlock(out_channels=self.out_channels, dtype=self.dtype, name=f"block_{i}")(x)
        if self.resample == "down":
            return Downsample(dtype=self.dtype, name="downsample")(x)
        if self.resample == "up":
            return Upsample(dtype=self.dtype, name="upsample")(x)
        return x


class MidBlock(nn.Module):
    """block_1 → attn_1 → block_2 at constant width."""

    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        x = ResnetBlock(out_channels=c, dtype=self.dtype, name="block_1")(x)
        x = AttnBlock(dtype=self.dtype, attention=self.attention, name="attn_1")(x)
        return ResnetBlock(out_channels=c, dtype=self.dtype, name="block_2")(x)


class _Coder(nn.Module):
    """Fields and output head (GN, SiLU, conv_out) shared by the encoder and the decoder."""

    ch: int
    ch_mult: Sequence[int]
    num_res_blocks: int
    out_channels: int
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    def output(self, h: jax.Array) -> jax.Array:
        """norm_out → SiLU → conv_out."""
        return conv(self.out_channels, 3, dtype=self.dtype, name="conv_out")(nn.silu(_norm("norm_out")(h)))


class Encoder(_Coder):
    """conv_in, `num_res_blocks` ResnetBlocks per level with a Downsample between levels, mid, GN, SiLU, conv_out."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = conv(self.ch, 3, dtype=self.dtype, name="conv_in")(x)
        for level, mult in enumerate(self.ch_mult):
            resample = "down" if level != len(self.ch_mult) - 1 else "none"
            h = Level(out_channels=self.ch * mult, blocks=self.num_res_blocks, resample=resample, dtype=self.dtype,
                      name=f"down_{level}")(h)
        return self.output(MidBlock(dtype=self.dtype, attention=self.attention, name="mid")(h))


class Decoder(_Coder):
    """conv_in, mid, then levels from the deepest up (`num_res_blocks + 1` blocks, Upsample but at level 0), conv_out."""

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = conv(self.ch * self.ch_mult[-1], 3, dtype=self.dtype, name="conv_in")(z)
        h = MidBlock(dtype=self.dtype, attention=self.attention, name="mid")(h)
        for level in reversed(range(len(self.ch_mult))):
            resample = "up" if level != 0 else "none"
            h = Level(out_channels=self.ch * self.ch_mult[level], blocks=self.num_res_blocks + 1, resample=resample,
                      dtype=self.dtype, name=f"up_{level}")(h)
        return self.output(h)


class AutoencoderKL(nn.Module):
    """The KL autoencoder: `encode` gives the posterior moments, `decode` maps latents back to images.

    Images are NHWC in [-1, 1]; latents are unscaled (multiply by LATENT_SCALE for the diffusion model).
    Each level but the last halves the resolution (f8 for 4 levels). `encode_video`/`decode_video` take
    (b, t, h, w, c) and run all frames as one batch, as the reference's per-frame loop does frame by frame.
    """

    ch: int = 128
    ch_mult: Sequence[int] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4
    in_channels: int = 3
    out_ch: int = 3
    dtype: DTypeLike = jnp.float32
    attention: str = "xla"

    def setup(self) -> None:
        dtype = jnp.dtype(self.dtype)
        # Modules assigned in setup take the attribute's name, hence name=None.
        coder = dict(ch=self.ch, ch_mult=tuple(self.ch_mult), num_res_blocks=self.num_res_blocks, dtype=dtype,
                     attention=self.attention)
        self.encoder = Encoder(out_channels=2 * self.z_channels, **coder)
        self.decoder = Decoder(out_channels=self.out_ch, **coder)
        self.quant_conv = conv(2 * self.embed_dim, 1, dtype=dtype, name=None)
        self.post_quant_conv = conv(self.z_channels, 1, dtype=dtype, name=None)

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent pixel along each spatial axis."""
        return 2 ** (len(self.ch_mult) - 1)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Images (b, h, w, in_channels) → (mean, logvar), each (b, h/f, w/f, embed_dim), float32, logvar clamped."""
        f = self.downsample_factor
        if x.ndim != 4 or x.shape[-1] != self.in_channels or x.shape[1] % f or x.shape[2] % f:
            raise ShapeError(f"VAE encode input: expected (batch, h, w, {self.in_channels}) with h and w "
                             f"multiples of {f}, got {x.shape}")
        moments = self.quant_conv(self.encoder(x.astype(jnp.dtype(self.dtype)))).astype(jnp.float32)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)

    def decode(self, z: jax.Array) -> jax.Array:
        """Unscaled latents (b, h, w, embed_dim) → images (b, h·f, w·f, out_ch), float32, not clipped."""
        if z.ndim != 4 or z.shape[-1] != self.embed_dim:
            raise ShapeError(f"VAE decode input: expected (batch, h, w, {self.embed_dim}), got {z.shape}")
        z = self.post_quant_conv(z.astype(jnp.dtype(self.dtype)))
        return self.decoder(z).astype(jnp.float32)

    def encode_video(self, video: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per-frame moments of (b, t, h, w, c) video, computed as one (b·t)-image batch."""
        b, _ = _video_shape(video, "VAE encode_video input")
        mean, logvar = self.encode(einops.rearrange(video, "b t h w c -> (b t) h w c"))
        return (einops.rearrange(mean, "(b t) h w c -> b t h w c", b=b),
                einops.rearrange(logvar, "(b t) h w c -> b t h w c", b=b))

    def decode_video(self, z: jax.Array) -> jax.Array:
        """Per-frame decode of (b, t, h, w, embed_dim) latents, computed as one (b·t)-latent batch."""
        b, _ = _video_shape(z, "VAE decode_video input")
        frames = self.decode(einops.rearrange(z, "b t h w c -> (b t) h w c"))
        return einops.rearrange(frames, "(b t) h w c -> b t h w c", b=b)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Reconstruct images through the posterior mode (used to initialise every parameter)."""
        mean, _ = self.encode(x)
        return self.decode(mean)


def _video_shape(x: jax.Array, what: str) -> tuple[int, int]:
    if x.ndim != 5:
        raise ShapeError(f"{what}: expected (batch, frames, h, w, channels), got {x.shape}")
    return x.shape[0], x.shape[1]


def sample_latent(key: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """A draw from the diagonal Gaussian posterior: mean + exp(logvar / 2) · N(0, 1)."""
    return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)


def latent_mode(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """The posterior mode (its mean)."""
    del logvar
    return mean


def scale_latents(z: jax.Array) -> jax.Array:
    """VAE latents → diffusion latents (× 0.18215)."""
    return z * LATENT_SCALE


def unscale_latents(z: jax.Array) -> jax.Array:
    """Diffusion latents → VAE latents (÷ 0.18215)."""
    return z / LATENT_SCALE
