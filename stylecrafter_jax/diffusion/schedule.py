"""The DDPM noise schedule (scaled-linear betas), q_sample, eps-prediction and the checkpoint buffer check.

The schedule is VideoCrafter's "linear" one, which is linear in sqrt space (diffusers calls it
"scaled_linear"): β_t = linspace(√0.00085, √0.012, 1000)², ᾱ_t = ∏(1 − β). Every buffer is computed
in float64 and stored in float32, exactly as the official `DDPM.register_schedule` does, so the
buffers found in an official checkpoint can be compared with ours one for one.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError, ShapeError

NUM_TRAIN_TIMESTEPS = 1000
LINEAR_START = 0.00085
LINEAR_END = 0.012


class DiffusionSchedule(NamedTuple):
    """The official DDPM buffers, float32 arrays of shape (num_timesteps,), named as in the checkpoint."""

    betas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    sqrt_alphas_cumprod: np.ndarray
    sqrt_one_minus_alphas_cumprod: np.ndarray
    log_one_minus_alphas_cumprod: np.ndarray
    sqrt_recip_alphas_cumprod: np.ndarray
    sqrt_recipm1_alphas_cumprod: np.ndarray
    posterior_variance: np.ndarray
    posterior_log_variance_clipped: np.ndarray
    posterior_mean_coef1: np.ndarray
    posterior_mean_coef2: np.ndarray

    @property
    def num_timesteps(self) -> int:
        """Number of training timesteps T (1000 for the official model)."""
        return int(self.betas.shape[0])


def make_schedule(num_timesteps: int = NUM_TRAIN_TIMESTEPS, linear_start: float = LINEAR_START,
                  linear_end: float = LINEAR_END) -> DiffusionSchedule:
    """Build the scaled-linear schedule and its derived buffers (float64 math, float32 storage)."""
    if num_timesteps < 2:
        raise ConfigError(f"num_timesteps: got {num_timesteps}, expected an integer >= 2")
    if not 0.0 < linear_start < linear_end < 1.0:
        raise ConfigError(f"linear_start/linear_end: got {linear_start}/{linear_end}, "
                          "expected 0 < linear_start < linear_end < 1")
    betas = np.linspace(linear_start ** 0.5, linear_end ** 0.5, num_timesteps, dtype=np.float64) ** 2
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    buffers = dict(
        betas=betas,
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        sqrt_alphas_cumprod=np.sqrt(alphas_cumprod),
        sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - alphas_cumprod),
        log_one_minus_alphas_cumprod=np.log(1.0 - alphas_cumprod),
        sqrt_recip_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod),
        sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod - 1.0),
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=np.log(np.maximum(posterior_variance, 1e-20)),
        posterior_mean_coef1=betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    )
    return DiffusionSchedule(**{name: value.astype(np.float32) for name, value in buffers.items()})


def _per_sample(buffer: np.ndarray, t: jax.Array, x: jax.Array, name: str) -> jax.Array:
    """Gather buffer[t] for a (B,) timestep vector and shape it (B, 1, ..., 1) to broadcast against x."""
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ShapeError(f"{name}: timesteps t has shape {t.shape}, expected ({x.shape[0]},), "
                         f"one timestep per sample of x {x.shape}")
    values = jnp.asarray(buffer)[t]
    return values.reshape(values.shape + (1,) * (x.ndim - 1))


def q_sample(schedule: DiffusionSchedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """Diffuse clean x0 to step t: √ᾱ_t·x0 + √(1−ᾱ_t)·noise, with t of shape (B,)."""
    if noise.shape != x0.shape:
        raise ShapeError(f"q_sample: noise has shape {noise.shape}, expected x0's shape {x0.shape}")
    t = jnp.asarray(t)
    return (_per_sample(schedule.sqrt_alphas_cumprod, t, x0, "q_sample") * x0
            + _per_sample(schedule.sqrt_one_minus_alphas_cumprod, t, x0, "q_sample") * noise)


def predict_x0_from_eps(schedule: DiffusionSchedule, x_t: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
    """Clean-sample estimate of an eps-prediction model: √(1/ᾱ_t)·x_t − √(1/ᾱ_t − 1)·eps."""
    if eps.shape != x_t.shape:
        raise ShapeError(f"predict_x0_from_eps: eps has shape {eps.shape}, expected x_t's shape {x_t.shape}")
    t = jnp.asarray(t)
    return (_per_sample(schedule.sqrt_recip_alphas_cumprod, t, x_t, "predict_x0_from_eps") * x_t
            - _per_sample(schedule.sqrt_recipm1_alphas_cumprod, t, x_t, "predict_x0_from_eps") * eps)


def schedule_from_config(model: Any) -> DiffusionSchedule:
    """The schedule of a model config's `diffusion` section (num_timesteps, linear_start, linear_end)."""
    return make_schedule(int(model.diffusion.num_timesteps), float(model.diffusion.linear_start),
                         float(model.diffusion.linear_end))


def check_schedule_buffers(buffers: Mapping[str, Any], schedule: DiffusionSchedule | None = None, *,
                           source: str = "checkpoint", rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Compare the DDPM buffers of an official checkpoint with `schedule` (default: `make_schedule()`).

    `buffers` maps names to arrays or CPU torch tensors, e.g. the checkpoint's whole `state_dict`;
    keys other than the twelve schedule buffers are ignored. Raises one CheckpointMismatchError that
    lists every missing, mis-shaped or differing buffer.
    """
    schedule = make_schedule() if schedule is None else schedule
    problems = []
    for name, ours in schedule._asdict().items():
        if name not in buffers:
            problems.append(f"missing buffer {name!r}")
            continue
        theirs = np.asarray(buffers[name], dtype=np.float64)
        if theirs.shape != ours.shape:
            problems.append(f"{name!r}: shape {theirs.shape}, expected {ours.shape}")
            continue
        bad = ~np.isclose(theirs, ours, rtol=rtol, atol=atol)
        if bad.any():
            i = int(np.argmax(np.abs(theirs - ours) * bad))
            problems.append(f"{name!r}: {int(bad.sum())} of {ours.size} values differ, worst at index {i}: "
                            f"got {theirs[i]:.8g}, expected {float(ours[i]):.8g}")
    if problems:
        raise CheckpointMismatchError(
            f"{source}: the DDPM schedule buffers do not match the scaled-linear schedule "
            f"(T={schedule.num_timesteps}, rtol={rtol}, atol={atol}):\n  " + "\n  ".join(problems))
