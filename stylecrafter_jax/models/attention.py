"""The one attention entry point (kernel dispatch) and relative-position temporal attention.

Every attention in the package calls `dot_product_attention`; the kernel is chosen by the
`implementation` argument, which comes from config (`model.attention`):

- "xla": einsum logits in float32, float32 softmax; runs everywhere and is the reference path.
- "cudnn": cuDNN flash attention through `jax.nn.dot_product_attention` (GPU, bf16/fp16 inputs).
- "splash": Pallas splash attention (TPU; sequence lengths that are multiples of 128).
- "auto": cudnn on GPU, splash on TPU, xla elsewhere, falling back to xla per call where the
  chosen kernel cannot take the shapes or dtype.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

Implementation = Literal["auto", "xla", "cudnn", "splash"]
IMPLEMENTATIONS = ("auto", "xla", "cudnn", "splash")
_SPLASH_BLOCK = 128


def choose_implementation(implementation: str, *, backend: str, dtype: jnp.dtype, q_len: int,
                          kv_len: int, head_dim: int) -> str:
    """Resolve "auto" and fall back to "xla" where the requested kernel cannot take the call."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {implementation!r}: expected one of {IMPLEMENTATIONS}")
    if implementation == "auto":
        implementation = {"gpu": "cudnn", "tpu": "splash"}.get(backend, "xla")
    if implementation == "cudnn":
        ok = (backend == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
              and head_dim % 8 == 0 and head_dim <= 128)
        return "cudnn" if ok else "xla"
    if implementation == "splash":
        ok = backend in ("tpu", "interpret") and q_len % _SPLASH_BLOCK == 0 and kv_len % _SPLASH_BLOCK == 0
        return "splash" if ok else "xla"
    return implementation


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, scale: float,
                          implementation: str = "xla", mask: jax.Array | None = None) -> jax.Array:
    """Multi-head attention softmax(q·kᵀ·scale)·v on (batch, length, heads, head_dim) arrays.

    `mask` (broadcastable to (batch, heads, q_len, kv_len), True = attend) is supported by the
    xla path only; masked calls always take it.
    """
    backend = jax.default_backend()
    impl = "xla" if mask is not None else choose_implementation(
        implementation, backend=backend, dtype=q.dtype, q_len=q.shape[1], kv_len=k.shape[1],
        head_dim=q.shape[-1])
    if impl == "cudnn":
        return jax.nn.dot_product_attention(q, k, v, scale=scale, implementation="cudnn")
    if impl == "splash":
        return _splash_attention(q, k, v, scale=scale, interpret=backend != "tpu")
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
