"""Small shared layers with the reference's numerics and logical partitioning on every parameter."""

from __future__ import annotations

import functools
from typing import Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

Axes = Sequence[str | None]

gelu = functools.partial(nn.gelu, approximate=False)
"""Exact (erf) GELU, as torch.nn.GELU() and the reference use; flax defaults to the tanh form."""


def partitioned(init: nn.initializers.Initializer, axes: Axes) -> nn.initializers.Initializer:
    """Wrap an initializer so that its parameter carries logical axis names."""
    return nn.with_logical_partitioning(init, tuple(axes))


def dense(features: int, axes: tuple[str | None, str | None], *, name: str, use_bias: bool = True,
          dtype: DTypeLike = jnp.float32,
          kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()) -> nn.Dense:
    """A linear layer named like the reference module, with logically partitioned parameters."""
    return nn.Dense(
        features=features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=partitioned(kernel_init, axes),
        bias_init=partitioned(nn.initializers.zeros_init(), (axes[1],)),
        name=name,
    )


def conv(features: int, kernel: int, *, name: str, stride: int = 1,
         padding: str | Sequence[tuple[int, int]] = "SAME_1", dtype: DTypeLike = jnp.float32,
         use_bias: bool = True,
         kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()) -> nn.Conv:
    """A 2-D NHWC convolution; padding "SAME_1" is the symmetric k//2 padding torch uses."""
    if padding == "SAME_1":
        padding = ((kernel // 2, kernel // 2), (kernel // 2, kernel // 2))
    return nn.Conv(
        features=features,
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding=padding,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=partitioned(kernel_init, (None, None, "conv_in", "conv_out")),
        bias_init=partitioned(nn.initializers.zeros_init(), ("conv_out",)),
        name=name,
    )


def split_heads(x: jax.Array, heads: int) -> jax.Array:
    """(n, l, heads*d) -> (n, l, heads, d)."""
    return einops.rearrange(x, "... (heads d) -> ... heads d", heads=heads)


def merge_heads(x: jax.Array) -> jax.Array:
    """(n, l, heads, d) -> (n, l, heads*d)."""
    return einops.rearrange(x, "... heads d -> ... (heads d)")


class GroupNorm(nn.Module):
    """GroupNorm over the last axis, statistics in float32, groups contiguous as in torch.

    Reduces over every axis but the first (batch) one, so a (b, t, h, w, c) input is normalised
    jointly over frames and a (b*t, h, w, c) input per frame.
    """

    num_groups: int = 32
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = x.dtype
        c = x.shape[-1]
        scale = self.param("scale", partitioned(nn.initializers.ones_init(), ("norm",)), (c,), jnp.float32)
        bias = self.param("bias", partitioned(nn.initializers.zeros_init(), ("norm",)), (c,), jnp.float32)
        xf = x.astype(jnp.float32)
        grouped = einops.rearrange(xf, "... (groups c) -> ... groups c", groups=self.num_groups)
        axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
        mean = jnp.mean(grouped, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(grouped - mean), axis=axes, keepdims=True)
        normed = einops.rearrange((grouped - mean) * jax.lax.rsqrt(var + self.epsilon),
                                  "... groups c -> ... (groups c)")
        return (normed * scale + bias).astype(dtype)


class LayerNorm(nn.Module):
    """LayerNorm over the last axis in float32 with torch's default eps 1e-5."""

    epsilon: float = 1e-5
    axis_name: str = "norm"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = x.dtype
        c = x.shape[-1]
        scale = self.param("scale", partitioned(nn.initializers.ones_init(), (self.axis_name,)), (c,),
                           jnp.float32)
        bias = self.param("bias", partitioned(nn.initializers.zeros_init(), (self.axis_name,)), (c,),
                          jnp.float32)
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
        return ((xf - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias).astype(dtype)
