"""The DDPM noise schedule, q_sample, eps/v/x0 conversions, the latent rescale and the checkpoint buffers.

The schedule is VideoCrafter's "linear" one, which is linear in sqrt space (diffusers calls it
"scaled_linear"): β_t = linspace(√0.00085, √0.012, 1000)², ᾱ_t = ∏(1 − β). DynamiCrafter 512/1024 rescale
these betas to zero terminal SNR (Lin et al. 2023, Alg. 1: √ᾱ shifted so that √ᾱ_T = 0 and scaled so
that √ᾱ_0 is kept), which makes ᾱ_999 exactly 0. Every buffer is computed in float64 and stored in
float32, exactly as the official `DDPM.register_schedule` does (v-prediction models register
`sqrt_recip_alphas_cumprod` and `sqrt_recipm1_alphas_cumprod` as zeros), so the buffers found in an
official checkpoint can be compared with ours one for one.

v-prediction: v = √ᾱ·ε − √(1−ᾱ)·x0, so x0 = √ᾱ·x_t − √(1−ᾱ)·v and ε = √ᾱ·v + √(1−ᾱ)·x_t.

Latent rescale (VideoCrafter1 I2V's `use_scale`, DynamiCrafter's `use_dynamic_rescale`): the model
diffuses s(t)·x0 with scale_arr = concat(linspace(1, base, turning_step), full(T, base)), s(t) = scale_arr[t].
`DiffusionProcess` bundles the buffers with the prediction type and this rescale, as the sampler needs them.
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
PREDICTIONS = ("eps", "v")
RESCALES = ("none", "use_scale", "dynamic")
"""Latent rescale kinds: none; VideoCrafter1's `use_scale` (the last DDIM step returns to s = scale_arr[0] = 1);
DynamiCrafter's `use_dynamic_rescale` (the last step keeps s(τ_last), so the result stays scaled)."""


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


class DiffusionProcess(NamedTuple):
    """What a sampler needs of a model's diffusion: the buffers, what the network predicts, the latent rescale.

    scale_arr: the float32 rescale curve (T + turning_step,) when `rescale` is not "none", else None.
    """

    schedule: DiffusionSchedule
    prediction: str = "eps"
    rescale: str = "none"
    scale_arr: np.ndarray | None = None


def zero_terminal_snr_betas(betas: np.ndarray) -> np.ndarray:
    """Rescale betas to zero terminal SNR (Lin et al. 2023, Alg. 1) in float64: ᾱ_T becomes 0, ᾱ_0 is kept."""
    sqrt_ac = np.sqrt(np.cumprod(1.0 - np.asarray(betas, np.float64)))
    first, last = sqrt_ac[0], sqrt_ac[-1]
    alphas_cumprod = ((sqrt_ac - last) * first / (first - last)) ** 2
    alphas = np.concatenate([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return 1.0 - alphas


def make_schedule(num_timesteps: int = NUM_TRAIN_TIMESTEPS, linear_start: float = LINEAR_START,
                  linear_end: float = LINEAR_END, *, zero_terminal_snr: bool = False,
                  prediction: str = "eps") -> DiffusionSchedule:
    """Build the scaled-linear schedule (optionally ZTSNR-rescaled) and its buffers (float64 math, float32 storage)."""
    if num_timesteps < 2:
        raise ConfigError(f"num_timesteps: got {num_timesteps}, expected an integer >= 2")
    if not 0.0 < linear_start < linear_end < 1.0:
        raise ConfigError(f"linear_start/linear_end: got {linear_start}/{linear_end}, "
                          "expected 0 < linear_start < linear_end < 1")
    check_choice("model.diffusion.prediction", prediction, PREDICTIONS)
    if zero_terminal_snr and prediction != "v":
        raise ConfigError("model.diffusion.zero_terminal_snr: needs prediction 'v' (ᾱ_T = 0 leaves an eps "
                          f"model no x0 estimate at t = {num_timesteps - 1}), got prediction {prediction!r}")
    betas = np.linspace(linear_start ** 0.5, linear_end ** 0.5, num_timesteps, dtype=np.float64) ** 2
    if zero_terminal_snr:
        betas = zero_terminal_snr_betas(betas)
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    recip = (np.zeros(num_timesteps), np.zeros(num_timesteps)) if prediction == "v" else \
        (np.sqrt(1.0 / alphas_cumprod), np.sqrt(1.0 / alphas_cumprod - 1.0))
    buffers = dict(
        betas=betas,
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        sqrt_alphas_cumprod=np.sqrt(alphas_cumprod),
        sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - alphas_cumprod),
        log_one_minus_alphas_cumprod=np.log(1.0 - alphas_cumprod),
        sqrt_recip_alphas_cumprod=recip[0],
        sqrt_recipm1_alphas_cumprod=recip[1],
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=np.log(np.maximum(posterior_variance, 1e-20)),
        posterior_mean_coef1=betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    )
    return DiffusionSchedule(**{name: value.astype(np.float32) for name, value in buffers.items()})


def rescale_curve(num_timesteps: int = NUM_TRAIN_TIMESTEPS, base: float = 0.7, turning_step: int = 400) -> np.ndarray:
    """The official scale_arr: concat(linspace(1, base, turning_step), full(num_timesteps, base)), float32."""
    if not 0.0 < base <= 1.0:
        raise ConfigError(f"model.diffusion.rescale_base: got {base!r}, expected 0 < base <= 1")
    if isinstance(turning_step, bool) or not isinstance(turning_step, (int, np.integer)) \
            or not 2 <= turning_step <= num_timesteps:
        raise ConfigError(f"model.diffusion.rescale_turning_step: got {turning_step!r}, expected an integer in "
                          f"[2, {num_timesteps}]")
    curve = np.concatenate([np.linspace(1.0, base, turning_step), np.full(num_timesteps, base)])
    return curve.astype(np.float32)


def _per_sample(buffer: np.ndarray, t: jax.Array, x: jax.Array, name: str) -> jax.Array:
    """Gather buffer[t] for a (B,) timestep vector and shape it (B, 1, ..., 1) to broadcast against x."""
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ShapeError(f"{name}: timesteps t has shape {t.shape}, expected ({x.shape[0]},), "
                         f"one timestep per sample of x {x.shape}")
    values = jnp.asarray(buffer)[t]
    return values.reshape(values.shape + (1,) * (x.ndim - 1))


def _mix(schedule: DiffusionSchedule, name: str, t: jax.Array, first: jax.Array, first_name: str,
         second: jax.Array, second_name: str, sign: float) -> jax.Array:
    """√ᾱ_t·first + sign·√(1−ᾱ_t)·second, the two arrays of one shape and t of shape (B,)."""
    if second.shape != first.shape:
        raise ShapeError(f"{name}: {second_name} has shape {second.shape}, expected {first_name}'s shape "
                         f"{first.shape}")
    t = jnp.asarray(t)
    return (_per_sample(schedule.sqrt_alphas_cumprod, t, first, name) * first
            + sign * _per_sample(schedule.sqrt_one_minus_alphas_cumprod, t, first, name) * second)


def q_sample(schedule: DiffusionSchedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """Diffuse clean x0 to step t: √ᾱ_t·x0 + √(1−ᾱ_t)·noise, with t of shape (B,)."""
    return _mix(schedule, "q_sample", t, x0, "x0", noise, "noise", 1.0)


def predict_x0_from_eps(schedule: DiffusionSchedule, x_t: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
    """Clean-sample estimate of an eps-prediction model: √(1/ᾱ_t)·x_t − √(1/ᾱ_t − 1)·eps."""
    if eps.shape != x_t.shape:
        raise ShapeError(f"predict_x0_from_eps: eps has shape {eps.shape}, expected x_t's shape {x_t.shape}")
    t = jnp.asarray(t)
    return (_per_sample(schedule.sqrt_recip_alphas_cumprod, t, x_t, "predict_x0_from_eps") * x_t
            - _per_sample(schedule.sqrt_recipm1_alphas_cumprod, t, x_t, "predict_x0_from_eps") * eps)


def velocity(schedule: DiffusionSchedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """The v target of x0 diffused with `noise` to step t: √ᾱ_t·noise − √(1−ᾱ_t)·x0."""
    return _mix(schedule, "velocity", t, noise, "noise", x0, "x0", -1.0)


def predict_x0_from_v(schedule: DiffusionSchedule, x_t: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """Clean-sample estimate of a v-prediction model: √ᾱ_t·x_t − √(1−ᾱ_t)·v."""
    return _mix(schedule, "predict_x0_from_v", t, x_t, "x_t", v, "v", -1.0)


def predict_eps_from_v(schedule: DiffusionSchedule, x_t: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """Noise estimate of a v-prediction model: √ᾱ_t·v + √(1−ᾱ_t)·x_t."""
    return _mix(schedule, "predict_eps_from_v", t, v, "v", x_t, "x_t", 1.0)


def schedule_from_config(model: Any) -> DiffusionSchedule:
    """The schedule of a model config's `diffusion` section (T, linear_start/end, zero_terminal_snr, prediction)."""
    diffusion = model.diffusion
    return make_schedule(int(diffusion.num_timesteps), float(diffusion.linear_start), float(diffusion.linear_end),
                         zero_terminal_snr=bool(diffusion.get("zero_terminal_snr", False)),
                         prediction=diffusion.get("prediction", "eps"))


def process_from_config(model: Any) -> DiffusionProcess:
    """The `DiffusionProcess` of a model config's `diffusion` section.

    Besides the schedule's keys it reads prediction ("eps" | "v"), rescale (`RESCALES`), rescale_base
    and rescale_turning_step, all optional (eps, none, 0.7, 400).
    """
    diffusion = model.diffusion
    schedule = schedule_from_config(model)
    rescale = check_choice("model.diffusion.rescale", diffusion.get("rescale", "none"), RESCALES)
    scale_arr = None if rescale == "none" else rescale_curve(
        schedule.num_timesteps, float(diffusion.get("rescale_base", 0.7)),
        diffusion.get("rescale_turning_step", 400))
    return DiffusionProcess(schedule=schedule, prediction=diffusion.get("prediction", "eps"), rescale=rescale,
                            scale_arr=scale_arr)


def check_schedule_buffers(buffers: Mapping[str, Any], schedule: DiffusionSchedule | None = None, *,
                           source: str = "checkpoint", rtol: float = 1e-5, atol: float = 1e-6,
                           scale_arr: np.ndarray | None = None) -> None:
    """Compare the DDPM buffers of an official checkpoint with `schedule` (default: `make_schedule()`).

    `buffers` maps names to arrays or CPU torch tensors, e.g. the checkpoint's whole `state_dict`;
    keys other than the twelve schedule buffers (and `scale_arr` when given) are ignored. Raises one
    CheckpointMismatchError that lists every missing, mis-shaped or differing buffer.
    """
    schedule = make_schedule() if schedule is None else schedule
    expected = dict(schedule._asdict(), **({} if scale_arr is None else {"scale_arr": scale_arr}))
    problems = []
    for name, ours in expected.items():
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
            f"{source}: the DDPM schedule buffers do not match the configured schedule "
            f"(T={schedule.num_timesteps}, rtol={rtol}, atol={atol}):\n  " + "\n  ".join(problems))


BUFFER_TOLERANCES = {"float16": (1e-3, 1e-7), "bfloat16": (8e-3, 1e-6)}
"""(rtol, atol) of the buffer check per stored dtype; any other dtype is compared at (1e-5, 1e-6)."""


def process_from_buffers(buffers: Mapping[str, np.ndarray], model: Any, *,
                         source: str = "checkpoint") -> DiffusionProcess:
    """The process the sampler uses, from a state dict's schedule buffers, checked against the model config.

    As the official code loads them: the checkpoint's own values (fp16-rounded where the file is fp16,
    widened to float32) replace the recomputed ones, after every buffer, and `scale_arr` for a rescaled
    model, has been compared with `process_from_config(model)` at the stored dtype's tolerance. A state
    dict without any schedule buffer gives the config's process; one with only some of them, or with a
    `scale_arr` the config does not expect, is an error.
    """
    expected = process_from_config(model)
    if expected.scale_arr is None and "scale_arr" in buffers:
        raise CheckpointMismatchError(f"{source}: has a 'scale_arr' buffer (a model that rescales its latents, "
                                      "use_scale or use_dynamic_rescale), but model.diffusion.rescale is 'none'")
    names = DiffusionSchedule._fields + (() if expected.scale_arr is None else ("scale_arr",))
    present = [name for name in names if name in buffers]
    if not present:
        return expected
    dtypes = {str(np.asarray(buffers[name]).dtype) for name in present}
    tolerances = [BUFFER_TOLERANCES.get(dtype, (1e-5, 1e-6)) for dtype in dtypes]
    rtol, atol = max(r for r, _ in tolerances), max(a for _, a in tolerances)
    check_schedule_buffers(buffers, expected.schedule, source=source, rtol=rtol, atol=atol,
                           scale_arr=expected.scale_arr)
    stored = {name: np.asarray(buffers[name]).astype(np.float32) for name in names}
    schedule = DiffusionSchedule(**{name: stored[name] for name in DiffusionSchedule._fields})
    return expected._replace(schedule=schedule, scale_arr=stored.get("scale_arr"))


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return value if it is one of choices, else raise a ConfigError naming the setting."""
    if value not in choices:
        raise ConfigError(f"{name}: got {value!r}, expected one of {choices}")
    return value
