"""DDIM sampling as the official StyleCrafter/VideoCrafter code implements it, as one jitted lax.scan.

Timesteps: "uniform" spacing with the +1 offset, c = T // steps and τ = {0, c, 2c, ...} + 1, visited
from the largest down (981, 961, ..., 1 for 50 steps). When `steps` does not divide T this yields
len(range(0, T, c)) steps, which can be one or more than asked, as in the official code (diffusers'
"leading" spacing differs there). ᾱ_prev of the last visited step is ᾱ[0], not 1. σ = η·√((1−ᾱ_prev)
/(1−ᾱ)·(1−ᾱ/ᾱ_prev)); with η > 0 the last step adds noise too. x̂0 is not clipped (the official code,
latents) unless `clip_x0` > 0: then x̂0 is clipped to [−clip_x0, clip_x0] and ε re-derived from it, as
pixel-space DDPMs do (`clip_denoised`).

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
import numpy as np

from stylecrafter_jax.diffusion.schedule import DiffusionSchedule
from stylecrafter_jax.errors import ConfigError, ShapeError

Denoiser = Callable[[jax.Array, jax.Array, Any], jax.Array]
"""`denoise(x, t, cond) -> eps`: x (B, ...) float32, t (B,) int32 timesteps, cond any pytree of arrays."""


class DDIMCoefficients(NamedTuple):
    """Per-step DDIM constants in visiting order (largest timestep first), float32 except timesteps."""

    timesteps: np.ndarray
    alphas: np.ndarray
    alphas_prev: np.ndarray
    sigmas: np.ndarray


def ddim_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> np.ndarray:
    """The official "uniform" DDIM timesteps range(0, T, T // num_steps) + 1, ascending, int32."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ConfigError(f"sampling.steps: got {num_steps!r}, expected an integer >= 1")
    if num_steps > num_train_timesteps:
        raise ConfigError(f"sampling.steps: got {num_steps}, expected at most the {num_train_timesteps} "
                          "training timesteps")
    timesteps = np.arange(0, num_train_timesteps, num_train_timesteps // num_steps) + 1
    if timesteps[-1] >= num_train_timesteps:
        raise ConfigError(f"sampling.steps: {num_steps} steps give a stride of {num_train_timesteps // num_steps} "
                          f"and, with the +1 offset, timestep {timesteps[-1]}, past the last training "
                          f"timestep {num_train_timesteps - 1}; choose another step count (every divisor of "
                          f"{num_train_timesteps} up to {num_train_timesteps // 2} works, e.g. 50)")
    return timesteps.astype(np.int32)


def ddim_coefficients(schedule: DiffusionSchedule, num_steps: int, eta: float = 1.0) -> DDIMCoefficients:
    """ᾱ, ᾱ_prev and σ of every DDIM step (float64 math on the float32 ᾱ buffer, stored float32)."""
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"sampling.eta: got {eta!r}, expected 0 <= eta <= 1 (above 1, σ² can exceed "
                          "1 − ᾱ_prev and the DDIM direction term has no real square root)")
    ascending = ddim_timesteps(num_steps, schedule.num_timesteps)
    alphas_cumprod = schedule.alphas_cumprod.astype(np.float64)
    alphas = alphas_cumprod[ascending]
    alphas_prev = np.concatenate([alphas_cumprod[:1], alphas[:-1]])
    sigmas = eta * np.sqrt((1.0 - alphas_prev) / (1.0 - alphas) * (1.0 - alphas / alphas_prev))
    return DDIMCoefficients(timesteps=ascending[::-1].copy(),
                            alphas=alphas[::-1].astype(np.float32),
                            alphas_prev=alphas_prev[::-1].astype(np.float32),
                            sigmas=sigmas[::-1].astype(np.float32))


def ddim_step(x: jax.Array, eps: jax.Array, alpha: jax.Array, alpha_prev: jax.Array, sigma: jax.Array,
              noise: jax.Array | None, clip_x0: float = 0.0) -> jax.Array:
    """One DDIM update x_t → x_prev for scalar ᾱ, ᾱ_prev, σ; `noise` None means σ·z is left out."""
    x0 = (x - jnp.sqrt(1.0 - alpha) * eps) / jnp.sqrt(alpha)
    if clip_x0 > 0:
        x0 = jnp.clip(x0, -clip_x0, clip_x0)
        eps = (x - jnp.sqrt(alpha) * x0) / jnp.sqrt(1.0 - alpha)
    x_prev = jnp.sqrt(alpha_prev) * x0 + jnp.sqrt(1.0 - alpha_prev - sigma ** 2) * eps
    return x_prev if noise is None else x_prev + sigma * noise


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
    """The noise z of the `step`-th visited DDIM step (0-based): row i from fold_in(keys[i], step + 1)."""
    return _normal_per_sample(keys, step + 1, tuple(sample_shape))


class DDIMSampler:
    """A DDIM sampler over a `denoise(x, t, cond) -> eps` function, compiled once per input shape.

    The whole step loop is a `jax.lax.scan` inside one `jax.jit` that this instance keeps, so later
    calls with the same shapes (and cond structure) reuse the compiled sampler. `cond` is passed
    through to `denoise` as a traced argument: put the model parameters and the conditioning there,
    not in a closure, so new prompts or weights do not recompile. `on_step(k)`, if given, is called
    from the device (jax.debug.callback) after each visited step k = 0..steps-1, e.g. for a progress bar.
    """

    def __init__(self, denoise: Denoiser, schedule: DiffusionSchedule, *, num_steps: int = 50,
                 eta: float = 1.0, clip_x0: float = 0.0, on_step: Callable[[int], None] | None = None):
        if clip_x0 < 0:
            raise ConfigError(f"sampling.clip_x0: got {clip_x0!r}, expected 0 (no clipping) or a positive bound")
        self.denoise = denoise
        self.coefficients = ddim_coefficients(schedule, num_steps, eta)
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
        """Run every DDIM step from a given x_T (B, ...); `keys` (B,) gives each sample's step noise."""
        if x_T.ndim < 2 or keys.ndim != 1 or keys.shape[0] != x_T.shape[0]:
            raise ShapeError(f"sample_from: x_T has shape {x_T.shape} and keys {keys.shape}, expected "
                             "x_T (B, ...) with at least 2 dimensions and one key per sample, keys (B,)")
        return self._loop(cond, x_T.astype(jnp.float32), keys)

    def _run_loop(self, cond: Any, x_T: jax.Array, keys: jax.Array) -> jax.Array:
        """The scanned loop over the visiting-order coefficients."""
        c = self.coefficients
        batch, sample_shape = x_T.shape[0], x_T.shape[1:]
        xs = (jnp.arange(self.num_steps), jnp.asarray(c.timesteps), jnp.asarray(c.alphas),
              jnp.asarray(c.alphas_prev), jnp.asarray(c.sigmas))

        def body(x, step):
            k, t, alpha, alpha_prev, sigma = step
            eps = self.denoise(x, jnp.full((batch,), t, jnp.int32), cond)
            if eps.shape != x.shape:
                raise ShapeError(f"denoise returned eps of shape {eps.shape}, expected x's shape {x.shape}")
            noise = step_noise(keys, k, sample_shape) if self.eta > 0 else None
            x = ddim_step(x, eps.astype(jnp.float32), alpha, alpha_prev, sigma, noise, self.clip_x0)
            if self.on_step is not None:
                jax.debug.callback(lambda k_: self.on_step(int(k_)), k)
            return x, None

        x, _ = jax.lax.scan(body, x_T, xs)
        return x
