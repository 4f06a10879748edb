"""The image-to-video training batch as DynamiCrafter's `get_batch_input` builds it, and its loss.

Pure functions of a key (jit them with the settings static):
- `draw_conditions`: the conditioning frame, one index per batch drawn from 0..frames−1 (`rand_cond_frame`)
  or the configured one, and the condition dropout from one uniform r per sample: text dropped for
  r < 2p, the image (a gray CLIP input) for p ≤ r < 3p, so text only, both and image only p each;
- `condition_frame`: that frame of any per-frame array (pixels for CLIP, or cached per-frame CLIP tokens);
- `build_batch`: the U-Net's inputs: x0 = the latent posterior sample; the VDG concat = the same sample's
  conditioning frame, clean, repeated over frames and never dropped (interpolation: the first and last
  frame latents, zeros between; without VDG: zeros); text and image tokens with the drops applied (the
  image drop takes the precomputed tokens of a gray image); the fps or frame stride of the clip sampling;
- `i2v_loss`: MSE against the eps or v target, mean over (t, h, w, c) and the batch, with x0 rescaled
  by the model's curve (DynamiCrafter's dynamic rescale) before noising and before the target.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from stylecrafter_jax.diffusion.schedule import DiffusionProcess, q_sample
from stylecrafter_jax.errors import ConfigError, ShapeError
from stylecrafter_jax.models.image_context import Resampler
from stylecrafter_jax.models.unet3d import UNet3D
from stylecrafter_jax.train.step import condition_drops, prediction_target, rescale_x0
from stylecrafter_jax.train.stages import stage_inputs

CONCATS = ("frame", "interp", "zeros", "none")
"""The VDG concat: the conditioning frame repeated, first and last frame with zeros between, zeros, no input."""


class I2VBatchSettings(NamedTuple):
    """How a stage's batches are built (hashable: pass it as a static argument)."""

    frames: int
    concat: str = "frame"
    rand_cond_frame: bool = True
    cond_frame_index: int = 0
    uncond_prob: float = 0.05
    motion: str = "fps"  # the batch key of the fps embedding's input: "fps" or "frame_stride"
    temporal_mode: str = "full"


class I2VDraws(NamedTuple):
    """One batch's random choices: the conditioning frame index () and the per-sample drops (b,)."""

    cond_index: jax.Array
    drop_text: jax.Array
    drop_image: jax.Array


class I2VLossModels(NamedTuple):
    """What the loss applies: the U-Net, the projector and the diffusion process (schedule, prediction, curve)."""

    unet: UNet3D
    projector: Resampler
    process: DiffusionProcess


def batch_settings(model: ml_collections.ConfigDict, stage: str, *, rand_cond_frame: bool = True,
                   cond_frame_index: int = 0, uncond_prob: float = 0.05) -> I2VBatchSettings:
    """The batch settings of a stage on the model; ConfigError naming a bad setting."""
    inputs = stage_inputs(stage, model.variant)
    frames = 1 if inputs.image_mode else int(model.frames)
    if isinstance(cond_frame_index, bool) or not isinstance(cond_frame_index, int) \
            or not 0 <= cond_frame_index < frames:
        raise ConfigError(f"cond_frame_index {cond_frame_index!r}: outside the clip, expected an integer in "
                          f"[0, {frames - 1}] ({frames} frames)")
    if not 0.0 <= uncond_prob <= 1.0 / 3.0:
        raise ConfigError(f"uncond_prob {uncond_prob!r}: expected 0 <= p <= 1/3 (three dropout bands of p each)")
    takes_concat = model.unet.get("concat_channels", 0) > 0
    concat = ("interp" if inputs.interp else "frame" if inputs.vdg else "zeros") if takes_concat else "none"
    return I2VBatchSettings(
        frames=frames, concat=concat, rand_cond_frame=rand_cond_frame and not inputs.interp and frames > 1,
        cond_frame_index=0 if inputs.interp else cond_frame_index, uncond_prob=float(uncond_prob),
        motion="frame_stride" if model.variant == "dynamicrafter_256" else "fps",
        temporal_mode="skip" if inputs.image_mode else "full")


def draw_conditions(key: jax.Array, batch: int, settings: I2VBatchSettings) -> I2VDraws:
    """The conditioning frame (one per batch) and the text / image drops (per sample) of one batch."""
    key_index, key_drop = jax.random.split(key)
    if settings.rand_cond_frame:
        index = jax.random.randint(key_index, (), 0, settings.frames)
    else:
        index = jnp.asarray(settings.cond_frame_index, jnp.int32)
    p = settings.uncond_prob
    drop_text, drop_image = condition_drops(key_drop, batch, text_only=p, both=p, other_only=p)
    return I2VDraws(cond_index=index, drop_text=drop_text, drop_image=drop_image)


def condition_frame(per_frame: jax.Array, index: jax.Array, name: str, frames: int) -> jax.Array:
    """Frame `index` of a (b, frames, ...) array; ShapeError naming `name` if it is not a clip of `frames`."""
    if per_frame.ndim < 2 or per_frame.shape[1] != frames:
        raise ShapeError(f"{name}: got shape {per_frame.shape}, expected (b, {frames}, ...): one entry per "
                         f"frame of the {frames}-frame clip")
    return jax.lax.dynamic_index_in_dim(per_frame, index, axis=1, keepdims=False)


def _vdg_concat(latents: jax.Array, index: jax.Array, mode: str) -> jax.Array | None:
    if mode == "none":
        return None
    if mode == "zeros":
        return jnp.zeros_like(latents)
    if mode == "interp":
        between = jnp.zeros_like(latents[:, 1:-1])
        return jnp.concatenate([latents[:, :1], between, latents[:, -1:]], axis=1)
    frame = jax.lax.dynamic_index_in_dim(latents, index, axis=1, keepdims=True)
    return jnp.broadcast_to(frame, latents.shape)


def build_batch(draws: I2VDraws, batch: dict[str, jax.Array], empty_text: jax.Array, gray_tokens: jax.Array,
                settings: I2VBatchSettings) -> dict[str, jax.Array]:
    """The U-Net's inputs of an encoded batch.

    `batch`: latents (b, t, h, w, c), a posterior sample; text_context (b, L, C); image_tokens, the CLIP
    tokens of the conditioning frame (b, n, D) or of every frame (b, t, n, D); and `settings.motion`
    (b,). `empty_text` (1, L, C) is the "" context, `gray_tokens` (n, D) or (1, n, D) a gray image's tokens.
    Returns latents, concat (absent for "none"), text_context, image_tokens and fps (b,) int32.
    """
    latents = batch["latents"].astype(jnp.float32)
    if latents.ndim != 5 or latents.shape[1] != settings.frames:
        raise ShapeError(f"latents: got shape {latents.shape}, expected (b, {settings.frames}, h, w, c)")
    if settings.concat == "interp" and settings.frames < 2:
        raise ShapeError(f"latents: interpolation needs at least 2 frames, got {settings.frames}")
    b = latents.shape[0]
    if settings.motion not in batch:
        raise ShapeError(f"batch has {sorted(batch)}; the fps embedding reads {settings.motion!r} (b,)")
    tokens = batch["image_tokens"].astype(jnp.float32)
    if tokens.ndim == 4:
        tokens = condition_frame(tokens, draws.cond_index, "image_tokens", settings.frames)
    if gray_tokens.shape not in (tokens.shape[1:], (1,) + tokens.shape[1:]):
        raise ShapeError(f"gray_tokens: got shape {gray_tokens.shape}, expected {tokens.shape[1:]} (the CLIP "
                         "tokens of one gray image)")
    gray = jnp.broadcast_to(gray_tokens.astype(jnp.float32).reshape((1,) + tokens.shape[1:]), tokens.shape)
    text = batch["text_context"].astype(jnp.float32)
    out = {
        "latents": latents,
        "text_context": jnp.where(draws.drop_text[:, None, None], empty_text.astype(jnp.float32), text),
        "image_tokens": jnp.where(draws.drop_image[:, None, None], gray, tokens),
        "fps": batch[settings.motion].reshape(b).astype(jnp.int32),
    }
    concat = _vdg_concat(latents, draws.cond_index, settings.concat)
    if concat is not None:
        out["concat"] = concat
    return out


def draw_noise(key: jax.Array, shape: tuple[int, ...], num_timesteps: int) -> tuple[jax.Array, jax.Array]:
    """Uniform timesteps (shape[0],) and Gaussian noise of `shape`, the loss's draws from its key."""
    key_t, key_noise = jax.random.split(key)
    return (jax.random.randint(key_t, shape[:1], 0, num_timesteps),
            jax.random.normal(key_noise, shape, jnp.float32))


def i2v_loss(params: dict, inputs: dict[str, jax.Array], key: jax.Array, models: I2VLossModels,
             settings: I2VBatchSettings) -> tuple[jax.Array, dict[str, Any]]:
    """Mean MSE of the U-Net's prediction against the eps or v target on `build_batch`'s inputs."""
    process = models.process
    x0 = inputs["latents"]
    t, noise = draw_noise(key, x0.shape, process.schedule.num_timesteps)
    x0 = rescale_x0(process.scale_arr, x0, t)
    noisy = q_sample(process.schedule, x0, t, noise)
    target = prediction_target(process.schedule, process.prediction, x0, t, noise)
    image_context = models.projector.apply({"params": params["projector"]}, inputs["image_tokens"])
    prediction = models.unet.apply({"params": params["unet"]}, noisy, t, inputs["text_context"],
                                   temporal_mode=settings.temporal_mode, image_context=image_context,
                                   concat=inputs.get("concat"), fps=inputs["fps"])
    per_example = jnp.mean(jnp.square(prediction - target).reshape(x0.shape[0], -1), axis=-1)
    loss = jnp.mean(per_example)
    return loss, {"mse": loss}
