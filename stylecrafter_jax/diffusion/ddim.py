"""DDIM (as the official StyleCrafter/VideoCrafter/DynamiCrafter code implements it) and DPM-Solver++(2M),
each as one jitted lax.scan over the steps.

Timesteps, visited from the largest down: "uniform" spacing with the +1 offset, c = T // steps and
τ = {0, c, 2c, ...} + 1 (981, 961, ..., 1 for 50 steps); when `steps` does not divide T this yields
len(range(0, T, c)) steps, which can be one or more than asked, as in the official code (diffusers'
"leading" spacing differs there). "uniform_trailing" (DynamiCrafter 512/1024, diffusers' "trailing"):
c = T / steps and τ = flip(round(arange(T, 0, −c))) − 1 (999, 979, ..., 19). ᾱ_prev of the last visited
step is ᾱ[0], not 1, for both samplers.

DDIM: σ = η·√((1−ᾱ_prev)/(1−ᾱ)·(1−ᾱ/ᾱ_prev)); with η > 0 the last step adds noise too. The direction
coefficient √(1−ᾱ_prev−σ²) is evaluated as √((1−ᾱ_prev)·(1 − η²·(1−ᾱ/ᾱ_prev)/(1−ᾱ))) in float64 and
clamped at 0: at t = 999 of a zero-terminal-SNR schedule (ᾱ = 0, η = 1) it is exactly 0, where the
official float32 arithmetic leaves a rounding residual of either sign (about 2.4e-4 after the square
root), so this port drifts slightly from the official float32 trajectory after that step, by design.
x̂0 is not clipped (the official code, latents) unless `clip_x0` > 0: then x̂0 is clipped to
[−clip_x0, clip_x0] and ε re-derived from it, as pixel-space DDPMs do (`clip_denoised`).

DPM-Solver++(2M) (Lu et al. 2022, the multistep data-prediction solver; diffusers' "midpoint" form):
with α = √ᾱ, σ = √(1−ᾱ), λ = log(α/σ) and h_k = λ_next − λ_k,
    x_next = (σ_next/σ_k)·x_k + (α_next − α_k·σ_next/σ_k)·D_k,  D_k = (1 + w_k)·x̂0_k − w_k·x̂0_{k−1},
w_k = h_k/(2·h_{k−1}); w = 0 (first order) at the first step and at the last one, whose λ step to ᾱ[0]
is long, so that the linear extrapolation of x̂0 overshoots there (diffusers' lower_order_final). It is
deterministic (`eta` is not used). At ᾱ = 0 (λ = −∞) the first step reduces to x_next = σ_next·x +
α_next·x̂0 and the second one is first order too.

Model outputs: eps (x̂0 = (x − √(1−ᾱ)·ε)/√ᾱ) or v (x̂0 = √ᾱ·x − √(1−ᾱ)·v, ε = √ᾱ·v + √(1−ᾱ)·x, from the
schedule's sqrt buffers at t as the official code does). Latent rescale (`DiffusionProcess.rescale`):
with s_k = scale_arr[τ_k] and s_prev,k the scale of the next visited timestep, the x̂0 a step uses is
x̂0·s_prev,k/s_k; for the last step s_prev is scale_arr[0] = 1 ("use_scale", VideoCrafter1) or s_k itself
("dynamic", DynamiCrafter, whose result therefore stays scaled by s(τ_last)). The solver's history is
kept unscaled (x̂0/s_k) and rescaled to s_prev,k at each step.

Guidance interval: with `guidance_interval=(start, stop)` the guided denoiser runs at visited steps
start <= k < stop and the `unguided` one (the fully conditioned branch alone) elsewhere, chosen per step
by lax.cond inside the same scan.

Randomness: every sample of a batch has its own key, `fold_in(seed_key, index)` with `index` its
position in the whole run (`sample_keys`), so a sample does not depend on which batch it lands in.
x_T is drawn from `fold_in(key, 0)` and the noise of the k-th visited step from `fold_in(key, k + 1)`.
This is not bit-identical to the official PyTorch code, which draws x_T and then the noise of every
step for the whole batch from one global torch RNG.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylecrafter_jax.diffusion.guidance import make_guided_denoiser
from stylecrafter_jax.diffusion.schedule import DiffusionProcess, DiffusionSchedule, check_choice
from stylecrafter_jax.errors import ConfigError, ShapeError

SAMPLERS = ("ddim", "dpmpp_2m")
SPACINGS = ("uniform", "uniform_trailing")

Denoiser = Callable[[jax.Array, jax.Array, Any], jax.Array]
"""`denoise(x, t, cond) -> eps or v`: x (B, ...) float32, t (B,) int32 timesteps, cond any pytree of arrays."""


class StepCoefficients(NamedTuple):
    """Per-step sampler constants in visiting order (largest timestep first), float32 except timesteps.

    alphas/alphas_prev/sigmas/directions: ᾱ, ᾱ_prev, σ and √(1−ᾱ_prev−σ²) of DDIM; sqrt_alphas and
    sqrt_one_minus_alphas: the √ᾱ, √(1−ᾱ) that turn the model output into x̂0 and ε; scales/scales_prev:
    s_k and s_prev,k of the latent rescale (ones without); dpm_x, dpm_d, dpm_w: DPM-Solver++(2M)'s
    σ_next/σ_k, α_next − α_k·σ_next/σ_k and w_k.
    """

    timesteps: np.ndarray
    alphas: np.ndarray
    alphas_prev: np.ndarray
    sigmas: np.ndarray
    directions: np.ndarray
    sqrt_alphas: np.ndarray
    sqrt_one_minus_alphas: np.ndarray
    scales: np.ndarray
    scales_prev: np.ndarray
    dpm_x: np.ndarray
    dpm_d: np.ndarray
    dpm_w: np.ndarray

    def at(self, k: int) -> "StepCoefficients":
        """The constants of visited step k (scalars)."""
        return StepCoefficients(*(field[k] for field in self))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def ddim_timesteps(num_steps: int, num_train_timesteps: int = 1000, spacing: str = "uniform") -> np.ndarray:
    """The official DDIM timesteps of `spacing` ("uniform": range(0, T, T // steps) + 1), ascending, int32."""
    check_choice("sampling.timestep_spacing", spacing, SPACINGS)
    if not _is_int(num_steps) or num_steps < 1:
        raise ConfigError(f"sampling.steps: got {num_steps!r}, expected an integer >= 1")
    if num_steps > num_train_timesteps:
        raise ConfigError(f"sampling.steps: got {num_steps}, expected at most the {num_train_timesteps} "
                          "training timesteps")
    if spacing == "uniform":
        timesteps = np.arange(0, num_train_timesteps, num_train_timesteps // num_steps) + 1
        if timesteps[-1] >= num_train_timesteps:
            raise ConfigError(f"sampling.steps: {num_steps} steps give a stride of {num_train_timesteps // num_steps} "
                              f"and, with the +1 offset, timestep {timesteps[-1]}, past the last training "
                              f"timestep {num_train_timesteps - 1}; choose another step count (every divisor of "
                              f"{num_train_timesteps} up to {num_train_timesteps // 2} works, e.g. 50)")
        return timesteps.astype(np.int32)
    stride = num_train_timesteps / num_steps
    timesteps = np.flip(np.round(np.arange(num_train_timesteps, 0, -stride))).astype(np.int64) - 1
    if len(timesteps) != num_steps or timesteps[0] < 0 or len(np.unique(timesteps)) != num_steps:
        raise ConfigError(f"sampling.steps: {num_steps} steps with uniform_trailing spacing give the timesteps "
                          f"{timesteps[:3].tolist()}... ({len(timesteps)} of them, from {timesteps[0]}), not "
                          f"{num_steps} distinct timesteps in [0, {num_train_timesteps - 1}]; choose another "
                          "step count (every divisor of the training timesteps works, e.g. 50)")
    return timesteps.astype(np.int32)


def sampler_steps(sampler: str, num_steps: int, spacing: str = "uniform", num_train_timesteps: int = 1000,
                  guidance_interval: Sequence[int] | None = None) -> int:
    """Check a sampler name, step count, spacing and guidance interval together; the visited step count."""
    check_choice("sampling.sampler", sampler, SAMPLERS)
    steps = len(ddim_timesteps(num_steps, num_train_timesteps, spacing))
    if sampler == "dpmpp_2m" and steps < 2:
        raise ConfigError(f"sampling.steps: got {num_steps}, expected at least 2 for sampler 'dpmpp_2m' (a "
                          "two-step multistep solver; one step is sampler 'ddim' with eta 0)")
    if guidance_interval is not None:
        interval = tuple(guidance_interval) if isinstance(guidance_interval, (tuple, list)) else None
        if interval is None or len(interval) != 2 or not all(_is_int(i) for i in interval) \
                or not 0 <= interval[0] < interval[1] <= steps:
            raise ConfigError(f"sampling.guidance_interval: got {guidance_interval!r}, expected None (guide every "
                              f"step) or (start, stop) with 0 <= start < stop <= {steps}, the visited steps "
                              "(0 = the noisiest) that run the unconditional branches")
    return steps


def step_coefficients(process: DiffusionProcess, num_steps: int, eta: float = 1.0,
                      spacing: str = "uniform") -> StepCoefficients:
    """Every per-step constant of both samplers (float64 math on the float32 buffers, stored float32)."""
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"sampling.eta: got {eta!r}, expected 0 <= eta <= 1 (above 1, σ² can exceed "
                          "1 − ᾱ_prev and the DDIM direction term has no real square root)")
    schedule = process.schedule
    ascending = ddim_timesteps(num_steps, schedule.num_timesteps, spacing)
    alphas_cumprod = schedule.alphas_cumprod.astype(np.float64)
    alphas = alphas_cumprod[ascending]
    alphas_prev = np.concatenate([alphas_cumprod[:1], alphas[:-1]])
    sigmas = eta * np.sqrt((1.0 - alphas_prev) / (1.0 - alphas) * (1.0 - alphas / alphas_prev))
    directions = np.sqrt(np.maximum(
        (1.0 - alphas_prev) * (1.0 - eta ** 2 * (1.0 - alphas / alphas_prev) / (1.0 - alphas)), 0.0))
    if process.prediction == "v":
        sqrt_alphas = schedule.sqrt_alphas_cumprod[ascending].astype(np.float64)
        sqrt_one_minus = schedule.sqrt_one_minus_alphas_cumprod[ascending].astype(np.float64)
    else:
        sqrt_alphas, sqrt_one_minus = np.sqrt(alphas), np.sqrt(1.0 - alphas)
    if process.rescale == "none":
        scales = scales_prev = np.ones_like(alphas)
    else:
        scales = process.scale_arr[ascending].astype(np.float64)
        last = process.scale_arr[0] if process.rescale == "use_scale" else scales[0]
        scales_prev = np.concatenate([[last], scales[:-1]])
    a_k, s_k = np.sqrt(alphas), np.sqrt(1.0 - alphas)
    a_n, s_n = np.sqrt(alphas_prev), np.sqrt(1.0 - alphas_prev)
    with np.errstate(divide="ignore"):
        lambdas = np.log(a_k) - np.log(s_k)
    h = (np.log(a_n) - np.log(s_n) - lambdas)[::-1]  # visiting order; inf where ᾱ_k = 0
    weights = np.concatenate([[0.0], h[1:-1] / (2.0 * h[:-2]), [0.0]])
    table = dict(alphas=alphas, alphas_prev=alphas_prev, sigmas=sigmas, directions=directions,
                 sqrt_alphas=sqrt_alphas, sqrt_one_minus_alphas=sqrt_one_minus, scales=scales,
                 scales_prev=scales_prev, dpm_x=s_n / s_k, dpm_d=a_n - a_k * s_n / s_k)
    visiting = {name: value[::-1].astype(np.float32) for name, value in table.items()}
    return StepCoefficients(timesteps=ascending[::-1].copy(), dpm_w=weights.astype(np.float32), **visiting)


def predict_x0_eps(out: jax.Array, x: jax.Array, step: StepCoefficients, prediction: str,
                   clip_x0: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """x̂0 and ε of a model output (eps or v) at one step; with clip_x0 > 0, x̂0 clipped and ε re-derived."""
    if prediction == "v":
        x0 = step.sqrt_alphas * x - step.sqrt_one_minus_alphas * out
        eps = step.sqrt_alphas * out + step.sqrt_one_minus_alphas * x
    else:
        x0, eps = (x - step.sqrt_one_minus_alphas * out) / step.sqrt_alphas, out
    if clip_x0 > 0:
        x0 = jnp.clip(x0, -clip_x0, clip_x0)
        eps = (x - step.sqrt_alphas * x0) / step.sqrt_one_minus_alphas
    return x0, eps


def ddim_update(x0: jax.Array, eps: jax.Array, step: StepCoefficients, noise: jax.Array | None) -> jax.Array:
    """One DDIM update √ᾱ_prev·x̂0 + √(1−ᾱ_prev−σ²)·ε (+ σ·z unless `noise` is None), x̂0 already rescaled."""
    x_prev = jnp.sqrt(step.alphas_prev) * x0 + step.directions * eps
    return x_prev if noise is None else x_prev + step.sigmas * noise


def dpmpp_2m_update(x: jax.Array, x0: jax.Array, x0_before: jax.Array, step: StepCoefficients) -> jax.Array:
    """One DPM-Solver++(2M) update from x̂0 of this step and of the previous one (both already rescaled)."""
    return step.dpm_x * x + step.dpm_d * ((1.0 + step.dpm_w) * x0 - step.dpm_w * x0_before)


def sample_keys(seed: int | jax.Array, indices: Sequence[int] | jax.Array) -> jax.Array:
    """Per-sample typed keys fold_in(seed_key, index), one per entry of `indices` (positions in the run).

    `seed` is an int, a typed key (`jax.random.key`) or a legacy `jax.random.PRNGKey`.
    """
    if isinstance(seed, (int, np.integer)):
        seed_key = jax.random.key(seed)
    elif jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        seed_key = seed
    else:
        seed_key = jax.random.wrap_key_data(seed)  # a legacy uint32 jax.random.PRNGKey
    indices = jnp.asarray(indices, dtype=jnp.uint32)
    if indices.ndim != 1:
        raise ShapeError(f"sample_keys: indices has shape {indices.shape}, expected a 1-D list of sample indices")
    return jax.vmap(lambda i: jax.random.fold_in(seed_key, i))(indices)


def _normal_per_sample(keys: jax.Array, data: int | jax.Array, sample_shape: tuple[int, ...]) -> jax.Array:
    """A (B, *sample_shape) float32 normal draw, row i from fold_in(keys[i], data)."""
    return jax.vmap(lambda key: jax.random.normal(jax.random.fold_in(key, data), sample_shape))(keys)


def initial_noise(keys: jax.Array, sample_shape: Sequence[int]) -> jax.Array:
    """x_T of shape (B, *sample_shape): row i is N(0, I) from fold_in(keys[i], 0)."""
    sample_shape = tuple(sample_shape)
    if not sample_shape or any(not isinstance(d, (int, np.integer)) or d < 1 for d in sample_shape):
        raise ShapeError(f"sample_shape: got {sample_shape}, expected a non-empty tuple of positive "
                         "integers, e.g. (frames, height // 8, width // 8, 4)")
    return _normal_per_sample(keys, 0, sample_shape)


def step_noise(keys: jax.Array, step: int | jax.Array, sample_shape: Sequence[int]) -> jax.Array:
    """The noise z of the `step`-th visited step (0-based): row i from fold_in(keys[i], step + 1)."""
    return _normal_per_sample(keys, step + 1, tuple(sample_shape))


class Sampler:
    """DDIM or DPM-Solver++(2M) over a `denoise(x, t, cond) -> eps or v` function, compiled once per input shape.

    `process` is a `DiffusionProcess` (prediction type and latent rescale) or a bare schedule (an eps
    model without rescale). The whole step loop is a `jax.lax.scan` inside one `jax.jit` that this
    instance keeps, so later calls with the same shapes (and cond structure) reuse the compiled sampler.
    `cond` is passed through to `denoise` as a traced argument: put the model parameters and the
    conditioning there, not in a closure, so new prompts or weights do not recompile. With a
    `guidance_interval`, `unguided` (same contract, one branch) runs at the steps outside it.
    `on_step(k)`, if given, is called from the device (jax.debug.callback) after each visited step
    k = 0..steps-1, e.g. for a progress bar.
    """

    def __init__(self, denoise: Denoiser, process: DiffusionProcess | DiffusionSchedule, *, sampler: str = "ddim",
                 num_steps: int = 50, spacing: str = "uniform", eta: float = 1.0, clip_x0: float = 0.0,
                 unguided: Denoiser | None = None, guidance_interval: Sequence[int] | None = None,
                 on_step: Callable[[int], None] | None = None):
        process = process if isinstance(process, DiffusionProcess) else DiffusionProcess(schedule=process)
        if clip_x0 < 0:
            raise ConfigError(f"sampling.clip_x0: got {clip_x0!r}, expected 0 (no clipping) or a positive bound")
        steps = sampler_steps(sampler, num_steps, spacing, process.schedule.num_timesteps, guidance_interval)
        if guidance_interval is not None and unguided is None:
            raise ConfigError("sampling.guidance_interval: set, but the sampler got no unguided denoiser")
        self.denoise, self.unguided = denoise, unguided
        self.process, self.sampler = process, sampler
        self.coefficients = step_coefficients(process, num_steps, eta, spacing)
        start, stop = (0, steps) if guidance_interval is None else guidance_interval
        self.guided_steps = (np.arange(steps) >= start) & (np.arange(steps) < stop)
        self.eta, self.clip_x0 = float(eta), float(clip_x0)
        self.on_step = on_step
        self._loop = jax.jit(self._run_loop)

    @property
    def num_steps(self) -> int:
        """Number of denoise evaluations, i.e. visited timesteps."""
        return int(self.coefficients.timesteps.shape[0])

    def sample(self, cond: Any, keys: jax.Array, sample_shape: Sequence[int]) -> jax.Array:
        """Draw x_T from the per-sample keys and run every step; returns x after the last update."""
        return self.sample_from(cond, initial_noise(keys, sample_shape), keys)

    def sample_from(self, cond: Any, x_T: jax.Array, keys: jax.Array) -> jax.Array:
        """Run every step from a given x_T (B, ...); `keys` (B,) gives each sample's step noise."""
        if x_T.ndim < 2 or keys.ndim != 1 or keys.shape[0] != x_T.shape[0]:
            raise ShapeError(f"sample_from: x_T has shape {x_T.shape} and keys {keys.shape}, expected "
                             "x_T (B, ...) with at least 2 dimensions and one key per sample, keys (B,)")
        return self._loop(cond, x_T.astype(jnp.float32), keys)

    def _model_output(self, x: jax.Array, t: jax.Array, cond: Any, guided: jax.Array) -> jax.Array:
        """The guided output, or the unguided one at steps outside the guidance interval."""
        if self.guided_steps.all():
            out = self.denoise(x, t, cond)
        else:
            out = jax.lax.cond(guided, lambda: self.denoise(x, t, cond).astype(jnp.float32),
                               lambda: self.unguided(x, t, cond).astype(jnp.float32))
        if out.shape != x.shape:
            raise ShapeError(f"denoise returned an output of shape {out.shape}, expected x's shape {x.shape}")
        return out.astype(jnp.float32)

    def _run_loop(self, cond: Any, x_T: jax.Array, keys: jax.Array) -> jax.Array:
        """The scanned loop over the visiting-order coefficients."""
        batch, sample_shape = x_T.shape[0], x_T.shape[1:]
        xs = (jnp.arange(self.num_steps), jnp.asarray(self.guided_steps),
              StepCoefficients(*(jnp.asarray(field) for field in self.coefficients)))

        def body(carry, step_inputs):
            x, unscaled_before = carry
            k, guided, step = step_inputs
            out = self._model_output(x, jnp.full((batch,), step.timesteps, jnp.int32), cond, guided)
            x0, eps = predict_x0_eps(out, x, step, self.process.prediction, self.clip_x0)
            unscaled = x0 / step.scales
            if self.sampler == "ddim":
                noise = step_noise(keys, k, sample_shape) if self.eta > 0 else None
                x = ddim_update(unscaled * step.scales_prev, eps, step, noise)
            else:
                x = dpmpp_2m_update(x, unscaled * step.scales_prev, unscaled_before * step.scales_prev, step)
            if self.on_step is not None:
                jax.debug.callback(lambda k_: self.on_step(int(k_)), k)
            return (x, unscaled), None

        (x, _), _ = jax.lax.scan(body, (x_T, jnp.zeros_like(x_T)), xs)
        return x


def make_sampler(model_fn: Callable[..., jax.Array], process: DiffusionProcess, sampling: ml_collections.ConfigDict,
                 *, on_step: Callable[[int], None] | None = None) -> Sampler:
    """The guided sampler a config's `sampling` section describes, over a guidance `model_fn`."""
    guidance = dict(mode=sampling.mode, text_scale=sampling.text_scale, style_scale=sampling.style_scale,
                    image_scale=sampling.image_scale, form=sampling.guidance_form,
                    image_cond_scale=sampling.image_cond_scale)
    denoise = make_guided_denoiser(model_fn, guidance_rescale=sampling.guidance_rescale, **guidance)
    interval = sampling.guidance_interval
    unguided = None if interval is None else make_guided_denoiser(model_fn, guided=False, **guidance)
    return Sampler(denoise, process, sampler=sampling.sampler, num_steps=sampling.steps,
                       spacing=sampling.timestep_spacing, eta=sampling.eta, clip_x0=sampling.clip_x0,
                       unguided=unguided, guidance_interval=None if interval is None else tuple(interval),
                       on_step=on_step)
