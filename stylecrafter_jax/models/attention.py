"""The one attention entry point (kernel dispatch) and relative-position temporal attention.

Every attention in the package calls `dot_product_attention`; the kernel is chosen by the
`implementation` argument, which comes from config (`model.attention`), and by the platform of the
devices being compiled for: the mesh in context while tracing (`jax.set_mesh`, as
`parallel.init.activation_rules` sets it), else `jax.default_backend()`. So an ahead-of-time compile
for TPU topology devices on a CPU host chooses the TPU kernels.

- "xla": einsum logits in float32, float32 softmax; runs everywhere and is the reference path.
- "cudnn": cuDNN flash attention through `jax.nn.dot_product_attention` (GPU, bf16/fp16 inputs).
  jax partitions it itself under a mesh (custom partitioning over batch and heads), so it needs no
  `shard_map`.
- "splash": Pallas splash attention (TPU; sequence lengths that are multiples of 128). A Mosaic kernel
  cannot be partitioned by XLA, so under a mesh it runs inside `jax.shard_map`: batch over the mesh
  axes of `activation_batch`, heads over those of `activation_heads` (the logical rules in context,
  else the default rules), lengths and head_dim whole.
- "splash_interpret": the splash kernel in Pallas interpret mode on any platform (for CPU tests).
- "auto": cudnn on GPU, splash on TPU, xla elsewhere.

Every kernel falls back to xla per call where it cannot take the call: masks, lengths that are not
multiples of 128, float32 inputs for cuDNN, or a batch or head count that the mesh axes do not divide.

The temporal attention (`relative_position_attention`) always runs on XLA: its sequences are the video
frames, far shorter than splash's 128-row blocks, so the logits are small and a flash kernel saves
nothing; and Shaw's value term (Σ_j p_ij·Ev[r_ij]) needs the probabilities themselves, which no fused
kernel returns (cuDNN's bias input covers only the logit term).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AbstractMesh, PartitionSpec

from stylecrafter_jax.parallel.rules import DEFAULT_RULES

Implementation = Literal["auto", "xla", "cudnn", "splash", "splash_interpret"]
IMPLEMENTATIONS = ("auto", "xla", "cudnn", "splash", "splash_interpret")
_SPLASH_BLOCK = 128
_SPLIT_AXES = ("activation_batch", None, "activation_heads", None)


def target_platform() -> str:
    """The platform of the devices being compiled for: the context mesh's, else the default backend's."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh.empty else mesh.abstract_device
    return jax.default_backend() if device is None else device.platform


def split_spec(mesh: AbstractMesh, *, batch: int, heads: int) -> PartitionSpec | None:
    """How a kernel call splits (batch, length, heads, head_dim) arrays over `mesh`; None when it cannot.

    P() when the arrays are already whole or local (no mesh, or inside a shard_map over every axis);
    None when only some axes are manual, or when the batch or head count does not divide over its axes.
    """
    if mesh.empty or mesh.are_all_axes_manual:
        return PartitionSpec()
    if mesh.manual_axes:
        return None
    spec = nn.logical_to_mesh_axes(_SPLIT_AXES, nn.get_logical_axis_rules() or DEFAULT_RULES)
    entries = []
    for size, entry in zip((batch, 1, heads, 1), spec):
        names = tuple(n for n in ((entry,) if isinstance(entry, str) else entry or ()) if n in mesh.axis_names)
        if size % math.prod(mesh.shape[n] for n in names):
            return None
        entries.append(names or None)
    return PartitionSpec(*entries)


def choose_implementation(implementation: str, *, platform: str, dtype: jnp.dtype, q_len: int,
                          kv_len: int, head_dim: int, splittable: bool = True) -> str:
    """Resolve "auto" for `platform` and fall back to "xla" where the requested kernel cannot take the call.

    `splittable`: whether the call splits over the mesh in context (see `split_spec`).
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {implementation!r}: expected one of {IMPLEMENTATIONS}")
    if implementation == "auto":
        implementation = {"gpu": "cudnn", "tpu": "splash"}.get(platform, "xla")
    if implementation == "cudnn":
        ok = (platform == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
              and head_dim % 8 == 0 and head_dim <= 128)
        return "cudnn" if ok else "xla"
    if implementation in ("splash", "splash_interpret"):
        ok = ((platform == "tpu" or implementation == "splash_interpret") and splittable
              and q_len % _SPLASH_BLOCK == 0 and kv_len % _SPLASH_BLOCK == 0)
        return implementation if ok else "xla"
    return implementation


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, scale: float,
                          implementation: str = "xla", mask: jax.Array | None = None) -> jax.Array:
    """Multi-head attention softmax(q·kᵀ·scale)·v on (batch, length, heads, head_dim) arrays.

    `mask` (broadcastable to (batch, heads, q_len, kv_len), True = attend) is supported by the
    xla path only; masked calls always take it.
    """
    mesh = jax.sharding.get_abstract_mesh()
    spec = split_spec(mesh, batch=q.shape[0], heads=q.shape[2])
    impl = "xla" if mask is not None else choose_implementation(
        implementation, platform=target_platform(), dtype=q.dtype, q_len=q.shape[1], kv_len=k.shape[1],
        head_dim=q.shape[-1], splittable=spec is not None)
    if impl == "cudnn":
        return jax.nn.dot_product_attention(q, k, v, scale=scale, implementation="cudnn")
    if impl in ("splash", "splash_interpret"):
        kernel = functools.partial(_splash_attention, scale=scale, interpret=impl == "splash_interpret")
        if mesh.empty or mesh.are_all_axes_manual:
            return kernel(q, k, v)
        return jax.shard_map(kernel, mesh=mesh, in_specs=(spec,) * 3, out_specs=spec, check_vma=False)(q, k, v)
    return _xla_attention(q, k, v, scale=scale, mask=mask)


def _xla_attention(q, k, v, *, scale, mask):
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


def _splash_attention(q, k, v, *, scale, interpret):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    _, q_len, heads, _ = q.shape
    kv_len = k.shape[1]
    mask = sm.MultiHeadMask([sm.FullMask((q_len, kv_len)) for _ in range(heads)])
    kernel = sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, interpret=interpret)
    to_heads_first = functools.partial(jnp.swapaxes, axis1=0, axis2=1)
    per_example = lambda qi, ki, vi: to_heads_first(  # noqa: E731
        kernel(to_heads_first(qi * scale), to_heads_first(ki), to_heads_first(vi)))
    return jax.vmap(per_example)(q, k, v)


def relative_position_index(length: int, max_distance: int) -> np.ndarray:
    """Table row for query frame i and key frame j: clamp(j - i, -M, M) + M, shape (length, length)."""
    offsets = np.arange(length)[None, :] - np.arange(length)[:, None]
    return np.clip(offsets, -max_distance, max_distance) + max_distance


def relative_position_attention(q: jax.Array, k: jax.Array, v: jax.Array, table_k: jax.Array,
                                table_v: jax.Array, *, scale: float, max_distance: int) -> jax.Array:
    """Shaw-style temporal self-attention on (batch, frames, heads, head_dim) arrays.

    logit_ij = (q_i·k_j + q_i·Ek[r_ij])·scale, out_i = Σ_j p_ij·v_j + Σ_j p_ij·Ev[r_ij], with the
    (2M+1, head_dim) tables shared over heads and r_ij = clamp(j - i, -M, M) + M.
    """
    index = relative_position_index(q.shape[1], max_distance)
    ek = table_k.astype(q.dtype)[index]
    ev = table_v.astype(v.dtype)[index]
    logits = (jnp.einsum("nihd,njhd->nhij", q, k, preferred_element_type=jnp.float32)
              + jnp.einsum("nihd,ijd->nhij", q, ek, preferred_element_type=jnp.float32)) * scale
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("nhij,njhd->nihd", probs, v) + jnp.einsum("nhij,ijd->nihd", probs, ev)
