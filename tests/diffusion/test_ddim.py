"""Tests of DDIM: timesteps and coefficients against diffusers, the update step, the scanned loop and RNG."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from stylecrafter_jax.diffusion.ddim import (DDIMSampler, ddim_coefficients, ddim_step, ddim_timesteps,
                                             initial_noise, sample_keys, step_noise)
from stylecrafter_jax.diffusion.schedule import make_schedule
from stylecrafter_jax.errors import ConfigError, ShapeError

SAMPLE_SHAPE = (2, 4, 4, 3)  # (frames, h, w, c)
STEPS = 10


@pytest.fixture(scope="module")
def schedule():
    return make_schedule()


def diffusers_ddim(num_steps, clip=0.0):
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1,
                              set_alpha_to_one=False, clip_sample=clip > 0, clip_sample_range=clip or 1.0,
                              prediction_type="epsilon")
    scheduler.set_timesteps(num_steps)
    return scheduler


def linear_denoise(x, t, cond):
    """A row-independent toy eps model: a·x + (t / 1000)·b."""
    return cond["a"] * x + (t.astype(jnp.float32) / 1000.0).reshape((-1,) + (1,) * (x.ndim - 1)) * cond["b"]


@pytest.fixture(scope="module")
def cond():
    return {"a": jnp.float32(0.3), "b": jnp.asarray(np.random.default_rng(0).standard_normal(SAMPLE_SHAPE),
                                                    jnp.float32)}


@pytest.fixture(scope="module")
def sampler(schedule):
    return DDIMSampler(linear_denoise, schedule, num_steps=STEPS, eta=1.0)


def test_timesteps_alphas_sigmas_equal_diffusers(schedule):
    c = ddim_coefficients(schedule, 50, eta=1.0)
    ref = diffusers_ddim(50)
    np.testing.assert_array_equal(c.timesteps, ref.timesteps.numpy())
    assert c.timesteps[0] == 981 and c.timesteps[-1] == 1 and len(c.timesteps) == 50
    t = torch.from_numpy(c.timesteps.astype(np.int64))
    prev = t - 1000 // 50
    ref_prev = torch.where(prev >= 0, ref.alphas_cumprod[prev.clamp(min=0)], ref.final_alpha_cumprod)
    ref_sigma = torch.stack([ref._get_variance(int(a), int(b)) for a, b in zip(t, prev)]).sqrt()
    np.testing.assert_allclose(c.alphas, ref.alphas_cumprod[t].numpy(), rtol=2e-5)
    np.testing.assert_allclose(c.alphas_prev, ref_prev.numpy(), rtol=2e-5)
    np.testing.assert_allclose(c.sigmas, ref_sigma.numpy(), rtol=2e-5)
    assert c.alphas_prev[-1] == schedule.alphas_cumprod[0]  # the last step goes to ᾱ[0], not 1
    np.testing.assert_allclose([c.sigmas[0], c.sigmas[-1]], [0.454, 0.0206], atol=5e-4)
    np.testing.assert_allclose(ddim_coefficients(schedule, 50, eta=0.25).sigmas, 0.25 * c.sigmas, rtol=1e-6)


def test_step_counts_follow_the_official_uniform_spacing():
    np.testing.assert_array_equal(ddim_timesteps(10), diffusers_ddim(10).timesteps.numpy()[::-1])
    # 30 does not divide 1000: the official range(0, 1000, 33) + 1 gives 31 steps (diffusers gives 30).
    np.testing.assert_array_equal(ddim_timesteps(30), np.arange(0, 1000, 33) + 1)
    assert len(ddim_timesteps(30)) == 31


@pytest.mark.parametrize("eta", [1.0, 0.5, 0.0])
def test_update_step_equals_diffusers(schedule, eta):
    c = ddim_coefficients(schedule, 50, eta=eta)
    ref = diffusers_ddim(50)
    rng = np.random.default_rng(1)
    for k in (0, 25, 49):
        x, eps, noise = (rng.standard_normal((2,) + SAMPLE_SHAPE).astype(np.float32) for _ in range(3))
        got = ddim_step(x, eps, c.alphas[k], c.alphas_prev[k], c.sigmas[k], noise)
        want = ref.step(torch.from_numpy(eps), int(c.timesteps[k]), torch.from_numpy(x), eta=eta,
                        variance_noise=torch.from_numpy(noise)).prev_sample
        np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4, atol=1e-4, err_msg=f"step {k}")


def test_clipped_x0_step_equals_diffusers_clip_sample_with_the_clipped_model_output(schedule):
    c = ddim_coefficients(schedule, 50, eta=1.0)
    ref = diffusers_ddim(50, clip=1.0)
    rng = np.random.default_rng(2)
    for k in (0, 25, 49):
        x, eps, noise = (rng.standard_normal((2,) + SAMPLE_SHAPE).astype(np.float32) for _ in range(3))
        got = ddim_step(x, eps, c.alphas[k], c.alphas_prev[k], c.sigmas[k], noise, clip_x0=1.0)
        want = ref.step(torch.from_numpy(eps), int(c.timesteps[k]), torch.from_numpy(x), eta=1.0,
                        use_clipped_model_output=True, variance_noise=torch.from_numpy(noise)).prev_sample
        np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4, atol=1e-4, err_msg=f"step {k}")
        unclipped = ddim_step(x, eps, c.alphas[k], c.alphas_prev[k], c.sigmas[k], noise)
        assert float(np.abs(np.asarray(unclipped) - np.asarray(got)).max()) > 1e-2  # the clip did something
    with pytest.raises(ConfigError, match="clip_x0"):
        DDIMSampler(linear_denoise, schedule, num_steps=STEPS, clip_x0=-1.0)


def test_sampler_equals_diffusers_loop(sampler, cond):
    keys = sample_keys(7, [0, 1])
    got = sampler.sample(cond, keys, SAMPLE_SHAPE)
    ref = diffusers_ddim(STEPS)
    x = torch.tensor(np.asarray(initial_noise(keys, SAMPLE_SHAPE)))
    a, b = float(cond["a"]), torch.tensor(np.asarray(cond["b"]))
    for k, t in enumerate(ref.timesteps):
        eps = a * x + (float(t) / 1000.0) * b
        noise = torch.tensor(np.asarray(step_noise(keys, k, SAMPLE_SHAPE)))
        x = ref.step(eps, t, x, eta=1.0, variance_noise=noise).prev_sample
    np.testing.assert_allclose(np.asarray(got), x.numpy(), rtol=1e-4, atol=1e-4)


def test_scanned_loop_equals_python_loop(sampler, cond):
    keys = sample_keys(3, [4, 9])
    x = initial_noise(keys, SAMPLE_SHAPE)
    got = sampler.sample_from(cond, x, keys)
    c = sampler.coefficients
    for k in range(STEPS):
        t = jnp.full((2,), c.timesteps[k], jnp.int32)
        x = ddim_step(x, linear_denoise(x, t, cond), c.alphas[k], c.alphas_prev[k], c.sigmas[k],
                      step_noise(keys, k, SAMPLE_SHAPE))
    np.testing.assert_allclose(np.asarray(got), np.asarray(x), rtol=1e-5, atol=1e-5)


def test_eta_zero_is_deterministic(schedule, sampler, cond):
    keys_a, keys_b = sample_keys(0, [0, 1]), sample_keys(1, [0, 1])
    x_T = initial_noise(keys_a, SAMPLE_SHAPE)
    deterministic = DDIMSampler(linear_denoise, schedule, num_steps=STEPS, eta=0.0)
    first = np.asarray(deterministic.sample_from(cond, x_T, keys_a))
    np.testing.assert_array_equal(first, np.asarray(deterministic.sample_from(cond, x_T, keys_b)))
    np.testing.assert_array_equal(first, np.asarray(deterministic.sample_from(cond, x_T, keys_a)))
    stochastic_a = np.asarray(sampler.sample_from(cond, x_T, keys_a))
    stochastic_b = np.asarray(sampler.sample_from(cond, x_T, keys_b))
    assert np.abs(stochastic_a - stochastic_b).max() > 1e-2


def test_each_sample_has_its_own_noise_whatever_the_batch(sampler, cond):
    batch = sampler.sample(cond, sample_keys(123, [0, 1, 2]), SAMPLE_SHAPE)
    alone = sampler.sample(cond, sample_keys(123, [1]), SAMPLE_SHAPE)
    np.testing.assert_allclose(np.asarray(batch[1]), np.asarray(alone[0]), rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(batch[0] - batch[1])).max() > 1e-1
    x_T = initial_noise(sample_keys(123, [0, 1]), SAMPLE_SHAPE)
    assert np.abs(np.asarray(x_T[0] - x_T[1])).max() > 1e-1
    assert abs(float(jnp.std(x_T)) - 1.0) < 0.2


def test_noise_streams_are_the_documented_fold_ins():
    seed_key = jax.random.key(5)
    keys = sample_keys(seed_key, [2, 7])
    key_7 = jax.random.fold_in(seed_key, 7)
    np.testing.assert_array_equal(jax.random.key_data(keys[1]), jax.random.key_data(key_7))
    np.testing.assert_array_equal(np.asarray(initial_noise(keys, SAMPLE_SHAPE)[1]),
                                  np.asarray(jax.random.normal(jax.random.fold_in(key_7, 0), SAMPLE_SHAPE)))
    np.testing.assert_array_equal(np.asarray(step_noise(keys, 3, SAMPLE_SHAPE)[1]),
                                  np.asarray(jax.random.normal(jax.random.fold_in(key_7, 4), SAMPLE_SHAPE)))
    np.testing.assert_array_equal(jax.random.key_data(sample_keys(5, [7])[0]), jax.random.key_data(key_7))
    legacy = sample_keys(jax.random.PRNGKey(5), [7])
    assert legacy.shape == (1,)
    np.testing.assert_array_equal(jax.random.key_data(legacy[0]), jax.random.key_data(key_7))


def test_compiled_once_per_shape_and_progress_callback(schedule, cond):
    traces, steps_seen = [], []

    def counting_denoise(x, t, c):
        traces.append(x.shape)
        return linear_denoise(x, t, c)

    sampler = DDIMSampler(counting_denoise, schedule, num_steps=5, on_step=steps_seen.append)
    keys = sample_keys(0, [0, 1])
    first = sampler.sample(cond, keys, SAMPLE_SHAPE)
    second = sampler.sample(dict(cond, a=jnp.float32(0.1)), keys, SAMPLE_SHAPE)
    jax.effects_barrier()
    assert len(traces) == 1
    assert sorted(steps_seen) == sorted(list(range(5)) * 2)
    assert np.abs(np.asarray(first - second)).max() > 1e-3


def test_bad_input(schedule, sampler, cond):
    for steps, message in [(0, "got 0, expected an integer >= 1"), (1001, "at most the 1000"),
                           (1000, "timestep 1000, past the last training timestep 999"),
                           (2.5, "expected an integer")]:
        with pytest.raises(ConfigError, match=message):
            DDIMSampler(linear_denoise, schedule, num_steps=steps)
    for eta in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="sampling.eta"):
            ddim_coefficients(schedule, 50, eta)
    keys = sample_keys(0, [0, 1])
    with pytest.raises(ShapeError, match="one key per sample"):
        sampler.sample_from(cond, jnp.zeros((3,) + SAMPLE_SHAPE), keys)
    with pytest.raises(ShapeError, match="sample_shape"):
        sampler.sample(cond, keys, (2, 0, 4, 3))
    with pytest.raises(ShapeError, match="indices"):
        sample_keys(0, [[0, 1]])
    wrong_eps = DDIMSampler(lambda x, t, c: x[..., :1], schedule, num_steps=2)
    with pytest.raises(ShapeError, match="denoise returned eps of shape"):
        wrong_eps.sample(cond, keys, SAMPLE_SHAPE)
