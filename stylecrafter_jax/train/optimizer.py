"""The optimizer: AdamW with a learning-rate schedule and global-norm clipping on the trainable leaves,
`set_to_zero` (and no state) on the frozen ones, combined by `optax.multi_transform` over stage labels."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import ml_collections
import optax

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.train.masks import FROZEN, TRAIN

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
