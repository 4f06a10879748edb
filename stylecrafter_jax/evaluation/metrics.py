"""The paper's metrics as jitted, batched array math on embeddings, frames and optical flow.

Definitions (the paper's text was not available; reconstructed from the official evaluation data and
the authors' note that CLIP scores are cosines of L2-normalised OpenCLIP ViT-H/14 embeddings):
- CLIP-Text: cos(CLIP image embedding of a frame, CLIP text embedding of the prompt), averaged over
  frames, then over samples.
- CLIP-Style / DINO-Style: cos(frame embedding, reference embedding), averaged over the frames and over
  the sample's references (multi-reference: the mean of the per-reference cosines), then over samples.
- CLIP-Temp: cos(CLIP embedding of frame t, of frame t + 1), averaged over the T − 1 pairs.
- Warping error: for each pair (t, t + 1), the forward flow F (t → t + 1) warps frame t + 1 back onto
  frame t (bilinear, `warp(x) = I_{t+1}(x + F(x))`); a pixel counts when x + F(x) lies inside the frame
  and passes the forward-backward check of Ruder et al. (2016),
  |F(x) + B(x + F(x))|² ≤ 0.01·(|F(x)|² + |B(x + F(x))|²) + 0.5 with B the backward flow
  (t + 1 → t); the error is Σ_x M(x)·‖I_t(x) − warp(x)‖² / Σ_x M(x) with RGB in [0, 1] and the
  squared norm over the 3 channels, as in Lai et al. (2018)'s evaluation (which divides by the pixel
  count when nothing is valid; the sum is then 0). It is averaged over pairs. The flow comes from
  OpenCV (`evaluation/flow.py`); the paper's flow model is not established (RAFT is usual), so values
  are comparable between runs of this code, not with the paper's table.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

OCCLUSION_ALPHA = 0.01
OCCLUSION_BETA = 0.5


def normalize(x: jax.Array) -> jax.Array:
    """L2-normalised along the last axis (float32; a zero vector stays zero)."""
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """Cosine similarity along the last axis, broadcasting the leading axes."""
    return jnp.sum(normalize(a) * normalize(b), axis=-1)


@jax.jit
def embedding_scores(frame_clip: jax.Array, text_clip: jax.Array, ref_clip: jax.Array, frame_dino: jax.Array,
                     ref_dino: jax.Array, ref_mask: jax.Array) -> dict[str, jax.Array]:
    """Per-sample CLIP-Text, CLIP-Style, DINO-Style and CLIP-Temp of a batch.

    frame_clip (B, T, D), text_clip (B, D), ref_clip (B, R, D), frame_dino (B, T, E), ref_dino (B, R, E),
    ref_mask (B, R) bool: which reference slots are real (samples have 1 to R references). Each score has
    shape (B,); CLIP-Temp is NaN when T == 1 (an image has no consecutive frames).
    """
    weights = ref_mask.astype(jnp.float32)
    weights = weights / jnp.maximum(jnp.sum(weights, axis=-1, keepdims=True), 1.0)

    def style(frames, refs):  # mean over frames and references of cos(frame, reference)
        cos = jnp.einsum("btd,brd->btr", normalize(frames), normalize(refs), precision=jax.lax.Precision.HIGHEST)
        return jnp.sum(jnp.mean(cos, axis=1) * weights, axis=-1)

    if frame_clip.shape[1] > 1:
        temp = jnp.mean(cosine(frame_clip[:, :-1], frame_clip[:, 1:]), axis=1)
    else:
        temp = jnp.full(frame_clip.shape[:1], jnp.nan, jnp.float32)
    return {
        "clip_text": jnp.mean(cosine(frame_clip, text_clip[:, None]), axis=1),
        "clip_style": style(frame_clip, ref_clip),
        "dino_style": style(frame_dino, ref_dino),
        "clip_temp": temp,
    }


def bilinear_sample(image: jax.Array, coords: jax.Array) -> jax.Array:
    """`image` (H, W, C) sampled at pixel coordinates `coords` (..., 2) as (x, y), edge-clamped."""
    h, w = image.shape[:2]
    x = jnp.clip(coords[..., 0], 0.0, w - 1.0)
    y = jnp.clip(coords[..., 1], 0.0, h - 1.0)
    x0 = jnp.clip(jnp.floor(x), 0, w - 2).astype(jnp.int32) if w > 1 else jnp.zeros_like(x, jnp.int32)
    y0 = jnp.clip(jnp.floor(y), 0, h - 2).astype(jnp.int32) if h > 1 else jnp.zeros_like(y, jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _pair_warp_error(frame: jax.Array, next_frame: jax.Array, forward: jax.Array,
                     backward: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(warping error, fraction of valid pixels) of one frame pair; frames (H, W, 3) in [0, 1], flows (H, W, 2)."""
    h, w = frame.shape[:2]
    grid = jnp.stack(jnp.meshgrid(jnp.arange(w, dtype=jnp.float32), jnp.arange(h, dtype=jnp.float32)), axis=-1)
    target = grid + forward
    inside = (target[..., 0] >= 0) & (target[..., 0] <= w - 1) & (target[..., 1] >= 0) & (target[..., 1] <= h - 1)
    back = bilinear_sample(backward, target)
    mismatch = jnp.sum(jnp.square(forward + back), axis=-1)
    bound = OCCLUSION_ALPHA * (jnp.sum(jnp.square(forward), -1) + jnp.sum(jnp.square(back), -1)) + OCCLUSION_BETA
    mask = (inside & (mismatch <= bound)).astype(jnp.float32)
    warped = bilinear_sample(next_frame, target)
    squared = jnp.sum(jnp.square(frame - warped), axis=-1)
    valid = jnp.sum(mask)
    error = jnp.sum(squared * mask) / jnp.where(valid > 0, valid, h * w * frame.shape[-1])
    return error, valid / (h * w)


@jax.jit
def warp_errors(frames: jax.Array, forward: jax.Array, backward: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Warping errors of consecutive frames.

    frames (N, T, H, W, 3) float in [0, 1]; forward/backward (N, T − 1, H, W, 2) flows (x, y) from frame t
    to t + 1 and back. Returns (per-sample mean warping error (N,), per-sample mean valid fraction (N,)).
    """
    pair = jax.vmap(jax.vmap(_pair_warp_error))
    errors, valid = pair(frames[:, :-1].astype(jnp.float32), frames[:, 1:].astype(jnp.float32),
                         forward.astype(jnp.float32), backward.astype(jnp.float32))
    return jnp.mean(errors, axis=1), jnp.mean(valid, axis=1)
