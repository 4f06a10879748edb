"""The train step: the diffusion loss, the optimizer, one jitted update of the trainable subtree (EMA, NaN
guard) and its ahead-of-time compile.

Encoded batches hold `latents` (b, t, h, w, c), `text_context` (b, L, C) and `image_tokens`
(b, n, D); for the reference's image batches (`frame_isolated`) every frame is its own image with its
own text, style reference and timestep: `text_context` (b, t, L, C), `image_tokens` (b, t, n, D).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from stylecrafter_jax.diffusion.schedule import (PREDICTIONS, DiffusionSchedule, check_choice, q_sample,
                                               velocity)
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.style import StyleAdapter, style_multipliers
from stylecrafter_jax.models.unet3d import UNet3D
from stylecrafter_jax.train.state import FROZEN, TRAIN, TrainState, merge, select, trainable


def temporal_mode(stage: str, kind: str) -> str:
    """How the U-Net's temporal layers run in a step of `stage` on a `kind` ("images" or "videos") batch: "full"
    on videos; on images "frame_isolated" in stage 2 (every frame of a packed pseudo-video its own image, as the
    reference trains), else "skip"."""
    if kind == "videos":
        return "full"
    return "frame_isolated" if stage == "stage2" else "skip"


# ===== Loss =====

WEIGHTINGS = ("uniform", "v")
TIMESTEP_SAMPLINGS = ("uniform", "high_noise")


class LossModels(NamedTuple):
    """What the loss applies: the U-Net, the adapter, the schedule and the empty-text context (1, L, C)."""

    unet: UNet3D
    adapter: StyleAdapter
    schedule: DiffusionSchedule
    empty_context: jax.Array


def sample_timesteps(key: jax.Array, shape: tuple[int, ...], train: ml_collections.ConfigDict,
                     num_timesteps: int) -> jax.Array:
    """Uniform integer timesteps, or biased toward high noise: t = ⌊T·u^(1/power)⌋."""
    if train.timestep_sampling not in TIMESTEP_SAMPLINGS:
        raise ConfigError(f"train.timestep_sampling {train.timestep_sampling!r}: expected one of "
                          f"{TIMESTEP_SAMPLINGS}")
    if train.timestep_sampling == "uniform":
        return jax.random.randint(key, shape, 0, num_timesteps)
    u = jax.random.uniform(key, shape) ** (1.0 / train.high_noise_power)
    return jnp.minimum((u * num_timesteps).astype(jnp.int32), num_timesteps - 1)


def loss_weights(schedule: DiffusionSchedule, t: jax.Array, weighting: str, cap: float = 0.0) -> jax.Array:
    """Per-example weights: 1, or 1/ᾱ_t (the eps loss rewritten as the v-prediction loss), at most `cap`
    when `cap` > 0 (near ᾱ = 0 the v weight grows without bound)."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"train.loss_weighting {weighting!r}: expected one of {WEIGHTINGS}")
    if cap < 0:
        raise ConfigError(f"train.loss_weight_cap {cap!r}: expected 0 (no cap) or a positive number")
    if weighting == "uniform":
        return jnp.ones(t.shape, jnp.float32)
    weights = 1.0 / jnp.asarray(schedule.alphas_cumprod)[t]
    return jnp.minimum(weights, cap) if cap > 0 else weights


def rescale_x0(scale_arr: np.ndarray | None, x0: jax.Array, t: jax.Array) -> jax.Array:
    """scale_arr[t]·x0 per sample (the latent rescale applied to x0 before noising), x0 itself without a curve."""
    if scale_arr is None:
        return x0
    scale = jnp.asarray(scale_arr)[t]
    return x0 * scale.reshape(scale.shape + (1,) * (x0.ndim - 1))


def prediction_target(schedule: DiffusionSchedule, prediction: str, x0: jax.Array, t: jax.Array,
                      noise: jax.Array) -> jax.Array:
    """What the network learns to predict of x0 noised with `noise` at t: the noise (eps) or the velocity (v)."""
    check_choice("model.diffusion.prediction", prediction, PREDICTIONS)
    return noise if prediction == "eps" else velocity(schedule, x0, t, noise)


def condition_drops(key: jax.Array, batch: int, *, text_only: float, both: float, other_only: float
                    ) -> tuple[jax.Array, jax.Array]:
    """(drop text, drop the other condition: style or image) per sample from one uniform draw u, in bands:
    text only for u < text_only, both up to text_only + both, the other only up to + other_only."""
    u = jax.random.uniform(key, (batch,))
    return u < text_only + both, (u >= text_only) & (u < text_only + both + other_only)


def dropout_masks(key: jax.Array, batch: int, train: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
    """(drop text, drop style) per sample: the `train.drop_text` / `drop_both` / `drop_style` bands."""
    return condition_drops(key, batch, text_only=train.drop_text, both=train.drop_both, other_only=train.drop_style)


def diffusion_loss(params: dict, batch: dict[str, jax.Array], key: jax.Array, models: LossModels,
                   train: ml_collections.ConfigDict, temporal_mode: str) -> tuple[jax.Array, dict[str, Any]]:
    """Mean weighted eps-MSE over the batch, and auxiliary scalars."""
    latents = batch["latents"].astype(jnp.float32)
    b, t = latents.shape[:2]
    per_frame = temporal_mode == "frame_isolated"
    n = b * t if per_frame else b
    text = batch["text_context"].reshape((n,) + batch["text_context"].shape[-2:])
    image_tokens = batch["image_tokens"].reshape((n,) + batch["image_tokens"].shape[-2:])
    key_t, key_noise, key_drop = jax.random.split(key, 3)

    timesteps = sample_timesteps(key_t, (n,), train, models.schedule.num_timesteps)
    noise = jax.random.normal(key_noise, latents.shape, jnp.float32)
    x0 = latents.reshape((n, -1) + latents.shape[2:])
    noisy = q_sample(models.schedule, x0, timesteps, noise.reshape(x0.shape)).reshape(latents.shape)

    style, scales = models.adapter.apply({"params": params["adapter"]}, image_tokens, text)
    drop_text, drop_style = dropout_masks(key_drop, n, train)
    text_in = jnp.where(drop_text[:, None, None], models.empty_context.astype(text.dtype), text)
    multipliers = style_multipliers(scales, 1.0) * (1.0 - drop_style[:, None].astype(scales.dtype))
    context = jnp.concatenate([text_in, style.astype(text_in.dtype)], axis=1)
    if per_frame:
        timesteps = timesteps.reshape(b, t)
        context = context.reshape((b, t) + context.shape[1:])
        multipliers = multipliers.reshape(b, t, -1)

    eps = models.unet.apply({"params": params["unet"]}, noisy, timesteps, context, multipliers,
                            temporal_mode=temporal_mode)
    per_example = jnp.mean(jnp.square(eps - noise).reshape(n, -1), axis=-1)
    weights = loss_weights(models.schedule, timesteps.reshape(n), train.loss_weighting, train.loss_weight_cap)
    loss = jnp.mean(weights * per_example)
    return loss, {"mse": jnp.mean(per_example), "style_scale_mean": jnp.mean(scales)}

# ===== Optimizer =====

SCHEDULES = ("constant", "warmup", "linear_decay")


def _linear_decay(lr: float, train: ml_collections.ConfigDict) -> optax.Schedule:
    """The reference's LambdaLRScheduler: the multiplier falls linearly from 1 to `final_decay_ratio` over
    `decay_steps` ticks, one tick every `decay_every` optimizer steps, then stays."""
    every, ticks, final = max(1, int(train.decay_every)), max(1, int(train.decay_steps)), train.final_decay_ratio

    def schedule(step):
        progress = jnp.clip((step // every) / ticks, 0.0, 1.0)
        return lr * (1.0 - (1.0 - final) * progress)

    return schedule


def learning_rate_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
    """"constant"; "warmup" (linear from 0 over `warmup_steps`, then constant); "linear_decay" (warmup, if
    any, then the reference's linear decay)."""
    if train.schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule {train.schedule!r}: expected one of {SCHEDULES}")
    lr = float(train.learning_rate)
    after = _linear_decay(lr, train) if train.schedule == "linear_decay" else optax.constant_schedule(lr)
    warmup = 0 if train.schedule == "constant" else int(train.warmup_steps)
    if warmup <= 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def make_optimizer(train: ml_collections.ConfigDict, labels: Any) -> optax.GradientTransformation:
    """multi_transform({'train': clip → AdamW(schedule), 'frozen': set_to_zero}, labels)."""
    inner = [optax.clip_by_global_norm(float(train.grad_clip))] if train.grad_clip else []
    inner.append(optax.adamw(learning_rate_schedule(train), b1=train.b1, b2=train.b2, eps=train.eps,
                             weight_decay=train.weight_decay))
    return optax.multi_transform({TRAIN: optax.chain(*inner), FROZEN: optax.set_to_zero()}, labels)

# ===== Step and compile =====

def train_step(state: TrainState, batch: dict[str, jax.Array], *, models: LossModels,
               tx: optax.GradientTransformation, labels: dict, train: ml_collections.ConfigDict,
               temporal_mode: str) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step. A non-finite loss or gradient leaves the state unchanged and is reported in
    `metrics['finite']`, so the host can stop the run at that step with nothing corrupted."""
    rng, key = jax.random.split(state.rng)
    frozen = select(state.params, labels, FROZEN)

    def loss_of(trained):
        return diffusion_loss(merge(trained, frozen), batch, key, models, train, temporal_mode)

    (loss, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable(state.params, labels))
    grad_norm = optax.global_norm(grads)
    full_grads = merge(grads, jax.tree.map(jnp.zeros_like, frozen))
    updates, opt_state = tx.update(full_grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema
    if ema is not None:
        decay = train.ema_decay
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, trainable(params, labels))

    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    new_state = TrainState(
        step=state.step + finite.astype(state.step.dtype),
        params=merge(keep(trainable(params, labels), trainable(state.params, labels)), frozen),
        opt_state=keep(opt_state, state.opt_state),
        ema=None if ema is None else keep(ema, state.ema),
        rng=rng,
    )
    metrics = {"loss": loss, "grad_norm": grad_norm, "finite": finite, **aux}
    return new_state, metrics


def compile_step(step_fn: Callable[..., Any], abstract_state: Any, abstract_batch: Any, *, state_shardings: Any,
                 batch_shardings: Any, log: Callable[[str], None] = print, name: str = "train step"
                 ) -> tuple[Callable[..., Any], float]:
    """AOT-compile `step_fn(state, batch)` with in/out shardings and the state donated.

    Returns the compiled function and the compiled step's FLOPs from XLA's cost analysis (0 where the
    lowering has none: an ahead-of-time compile for devices that are not attached).
    """
    jitted = jax.jit(step_fn, in_shardings=(state_shardings, batch_shardings), out_shardings=(state_shardings, None),
                     donate_argnums=0)
    start = time.perf_counter()
    lowered = jitted.lower(abstract_state, abstract_batch)
    compiled = lowered.compile()
    log(f"compiled {name} in {time.perf_counter() - start:.1f} s")
    return compiled, float((lowered.cost_analysis() or {}).get("flops", 0.0))


def make_step_fn(models: LossModels, tx: optax.GradientTransformation, labels: dict,
                 train: ml_collections.ConfigDict, temporal_mode: str) -> Callable[..., Any]:
    """`train_step` with everything but (state, batch) bound."""
    return functools.partial(train_step, models=models, tx=tx, labels=labels, train=train,
                             temporal_mode=temporal_mode)