"""Tests of DDIM and DPM-Solver++(2M): timesteps, coefficients and steps against diffusers and the reference's
formulas, v-prediction, ZTSNR, the latent rescale, the guidance interval, the scanned loop and RNG."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from stylecrafter_jax.diffusion.ddim import (Sampler, ddim_timesteps, ddim_update, dpmpp_2m_update,
                                             initial_noise, predict_x0_eps, sample_keys, sampler_steps,
                                             step_coefficients, step_noise)
from stylecrafter_jax.models.sizes import model_config
from tests.diffusion.references import reference_ddim_loop
from stylecrafter_jax.diffusion.schedule import (DiffusionProcess, make_schedule, process_from_buffers,
                                                 process_from_config, rescale_curve)
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


def ddim_coefficients(schedule, num_steps, eta=1.0):
    return step_coefficients(DiffusionProcess(schedule=schedule), num_steps, eta)


def ddim_step(x, eps, coefficients, k, noise, clip_x0=0.0):
    """The eps-model DDIM update of visited step k through the sampler's own step functions."""
    step = coefficients.at(k)
    x0, eps = predict_x0_eps(jnp.asarray(eps), jnp.asarray(x), step, "eps", clip_x0)
    return ddim_update(x0, eps, step, None if noise is None else jnp.asarray(noise))


def linear_denoise(x, t, cond):
    """A row-independent toy eps model: a·x + (t / 1000)·b."""
    return cond["a"] * x + (t.astype(jnp.float32) / 1000.0).reshape((-1,) + (1,) * (x.ndim - 1)) * cond["b"]


@pytest.fixture(scope="module")
def cond():
    return {"a": jnp.float32(0.3), "b": jnp.asarray(np.random.default_rng(0).standard_normal(SAMPLE_SHAPE),
                                                    jnp.float32)}


@pytest.fixture(scope="module")
def sampler(schedule):
    return Sampler(linear_denoise, schedule, num_steps=STEPS, eta=1.0)


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
        got = ddim_step(x, eps, c, k, noise)
        want = ref.step(torch.from_numpy(eps), int(c.timesteps[k]), torch.from_numpy(x), eta=eta,
                        variance_noise=torch.from_numpy(noise)).prev_sample
        np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4, atol=1e-4, err_msg=f"step {k}")


def test_clipped_x0_step_equals_diffusers_clip_sample_with_the_clipped_model_output(schedule):
    c = ddim_coefficients(schedule, 50, eta=1.0)
    ref = diffusers_ddim(50, clip=1.0)
    rng = np.random.default_rng(2)
    for k in (0, 25, 49):
        x, eps, noise = (rng.standard_normal((2,) + SAMPLE_SHAPE).astype(np.float32) for _ in range(3))
        got = ddim_step(x, eps, c, k, noise, clip_x0=1.0)
        want = ref.step(torch.from_numpy(eps), int(c.timesteps[k]), torch.from_numpy(x), eta=1.0,
                        use_clipped_model_output=True, variance_noise=torch.from_numpy(noise)).prev_sample
        np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4, atol=1e-4, err_msg=f"step {k}")
        unclipped = ddim_step(x, eps, c, k, noise)
        assert float(np.abs(np.asarray(unclipped) - np.asarray(got)).max()) > 1e-2  # the clip did something
    with pytest.raises(ConfigError, match="clip_x0"):
        Sampler(linear_denoise, schedule, num_steps=STEPS, clip_x0=-1.0)


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
        x = ddim_step(x, linear_denoise(x, t, cond), c, k, step_noise(keys, k, SAMPLE_SHAPE))
    np.testing.assert_allclose(np.asarray(got), np.asarray(x), rtol=1e-5, atol=1e-5)


def test_eta_zero_is_deterministic(schedule, sampler, cond):
    keys_a, keys_b = sample_keys(0, [0, 1]), sample_keys(1, [0, 1])
    x_T = initial_noise(keys_a, SAMPLE_SHAPE)
    deterministic = Sampler(linear_denoise, schedule, num_steps=STEPS, eta=0.0)
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

    sampler = Sampler(counting_denoise, schedule, num_steps=5, on_step=steps_seen.append)
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
            Sampler(linear_denoise, schedule, num_steps=steps)
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
    wrong_eps = Sampler(lambda x, t, c: x[..., :1], schedule, num_steps=2)
    with pytest.raises(ShapeError, match="denoise returned an output of shape"):
        wrong_eps.sample(cond, keys, SAMPLE_SHAPE)


# Image-to-video diffusion (v-prediction, ZTSNR, trailing spacing, latent rescale) and DPM-Solver++(2M).

def dynamicrafter_process(rescale="dynamic"):
    return DiffusionProcess(schedule=make_schedule(zero_terminal_snr=True, prediction="v"), prediction="v",
                            rescale=rescale, scale_arr=rescale_curve(1000, 0.7, 400))


def test_trailing_spacing_equals_the_reference_and_diffusers():
    trailing = ddim_timesteps(50, spacing="uniform_trailing")
    np.testing.assert_array_equal(trailing, np.arange(19, 1000, 20))  # 19, 39, ..., 999
    for steps in (50, 7):
        ref = DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
        ref.set_timesteps(steps)
        np.testing.assert_array_equal(ddim_timesteps(steps, spacing="uniform_trailing")[::-1], ref.timesteps.numpy())
    with pytest.raises(ConfigError, match="61 steps with uniform_trailing spacing give"):
        ddim_timesteps(61, spacing="uniform_trailing")  # the official arange leaves a 62nd timestep, -1
    with pytest.raises(ConfigError, match="sampling.timestep_spacing: got 'leading'"):
        ddim_timesteps(50, spacing="leading")


def test_ztsnr_trailing_coefficients_clamp_the_first_direction():
    c = step_coefficients(dynamicrafter_process(), 50, eta=1.0, spacing="uniform_trailing")
    assert (c.timesteps[0], c.timesteps[1], c.timesteps[2], c.timesteps[-1]) == (999, 979, 959, 19)
    assert c.alphas[0] == 0.0
    np.testing.assert_allclose([c.sigmas[0], c.sigmas[-1]], [0.999957, 0.028507], atol=2e-6)
    assert c.directions[0] == 0.0
    # The official float32 arithmetic leaves √(1 − ᾱ_prev − σ²) ≈ 2.4e-4 at t = 999; this port clamps it to 0.
    official = np.sqrt(np.float32(1.0) - c.alphas_prev[0] - c.sigmas[0] * c.sigmas[0])
    assert 1e-4 < official < 5e-4
    rest = np.sqrt(1.0 - c.alphas_prev[1:].astype(np.float64) - c.sigmas[1:].astype(np.float64) ** 2)
    np.testing.assert_allclose(c.directions[1:], rest, rtol=1e-4)
    # The dynamic rescale: s_k = scale_arr[τ_k], s_prev the next visited timestep's, the last keeps s(19).
    np.testing.assert_allclose(c.scales[[0, -1]], [0.7, 1.0 - 0.3 * 19 / 399], rtol=1e-6)
    np.testing.assert_array_equal(c.scales_prev[:-1], c.scales[1:])
    assert c.scales_prev[-1] == c.scales[-1] == pytest.approx(0.985714, abs=1e-6)
    vc1 = step_coefficients(dynamicrafter_process("use_scale"), 50, spacing="uniform_trailing")
    assert vc1.scales_prev[-1] == 1.0  # VideoCrafter1's use_scale returns to scale_arr[0]


@pytest.mark.parametrize("prediction, spacing, rescale", [("v", "uniform_trailing", "dynamic"),
                                                          ("eps", "uniform", "use_scale")])
def test_rescaled_ddim_loop_equals_the_reference_formula(cond, prediction, spacing, rescale):
    if prediction == "v":
        process = dynamicrafter_process(rescale)
    else:
        process = DiffusionProcess(schedule=make_schedule(), rescale=rescale, scale_arr=rescale_curve(1000, 0.7))
    sampler = Sampler(linear_denoise, process, num_steps=5, spacing=spacing, eta=1.0)
    keys = sample_keys(11, [0, 1])
    x_T = initial_noise(keys, SAMPLE_SHAPE)
    got = np.asarray(sampler.sample_from(cond, x_T, keys))
    want = reference_ddim_loop(process, spacing, 5, x_T, keys, lambda x, t: linear_denoise(x, t, cond))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    plain = Sampler(linear_denoise, process._replace(rescale="none", scale_arr=None), num_steps=5,
                        spacing=spacing, eta=1.0)
    assert np.abs(np.asarray(plain.sample_from(cond, x_T, keys)) - got).max() > 1e-2  # the rescale did something


def test_dpmpp_2m_update_equals_the_numpy_formula():
    process = DiffusionProcess(schedule=make_schedule())
    c = step_coefficients(process, 10, spacing="uniform_trailing")
    rng = np.random.default_rng(4)
    x, x0, x0_before = (rng.standard_normal((2,) + SAMPLE_SHAPE) for _ in range(3))
    ac = make_schedule().alphas_cumprod.astype(np.float64)
    visited = list(c.timesteps) + [0]  # the last step goes to ᾱ[0]
    lam = lambda t: np.log(np.sqrt(ac[t]) / np.sqrt(1 - ac[t]))  # noqa: E731
    for k in (0, 4, 9):
        s, n = visited[k], visited[k + 1]
        h = lam(n) - lam(s)
        if k in (0, 9):  # the first and the last step are first order
            d = x0
        else:
            r = (lam(s) - lam(visited[k - 1])) / h
            d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_before
        want = np.sqrt(1 - ac[n]) / np.sqrt(1 - ac[s]) * x - np.sqrt(ac[n]) * (np.exp(-h) - 1) * d
        got = dpmpp_2m_update(*(jnp.asarray(a, jnp.float32) for a in (x, x0, x0_before)), c.at(k))
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5, err_msg=f"step {k}")


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_dpmpp_2m_sampler_equals_diffusers(cond, prediction):
    ref = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                      beta_schedule="scaled_linear", prediction_type=prediction,
                                      algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                                      euler_at_final=True, final_sigmas_type="sigma_min")
    process = DiffusionProcess(schedule=make_schedule(prediction="v" if prediction == "v_prediction" else "eps"),
                               prediction="v" if prediction == "v_prediction" else "eps")
    sampler = Sampler(linear_denoise, process, sampler="dpmpp_2m", num_steps=5)
    ref.set_timesteps(timesteps=sampler.coefficients.timesteps.tolist())  # 801, 601, ..., 1, then ᾱ[0]
    keys = sample_keys(5, [0, 1])
    x_T = initial_noise(keys, SAMPLE_SHAPE)
    x = torch.tensor(np.asarray(x_T))
    for t in ref.timesteps:
        out = linear_denoise(jnp.asarray(x.numpy()), jnp.full((2,), int(t), jnp.int32), cond)
        x = ref.step(torch.tensor(np.asarray(out)), t, x).prev_sample
    np.testing.assert_allclose(np.asarray(sampler.sample_from(cond, x_T, keys)), x.numpy(), rtol=1e-4, atol=1e-4)


def gaussian_denoiser(process, mean, std):
    """The exact eps or v of data N(mean, std²) (per element): E[x0 | x_t] in closed form."""
    ac = jnp.asarray(process.schedule.alphas_cumprod)

    def denoise(x, t, _):
        a = ac[t].reshape((-1,) + (1,) * (x.ndim - 1))
        x0 = mean + std ** 2 * jnp.sqrt(a) / (a * std ** 2 + 1 - a) * (x - jnp.sqrt(a) * mean)
        eps = (x - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)
        return jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0 if process.prediction == "v" else eps

    return denoise


@pytest.mark.parametrize("process", [DiffusionProcess(schedule=make_schedule()), dynamicrafter_process("none")],
                         ids=["eps", "v_ztsnr"])
def test_dpmpp_2m_on_gaussian_data_lands_close_to_many_step_ddim(process):
    mean = jnp.asarray(np.random.default_rng(6).uniform(-1, 1, SAMPLE_SHAPE), jnp.float32)
    denoise = gaussian_denoiser(process, mean, 0.5)
    keys = sample_keys(2, [0, 1, 2, 3])
    x_T = initial_noise(keys, SAMPLE_SHAPE)

    def run(sampler, steps):
        return np.asarray(Sampler(denoise, process, sampler=sampler, num_steps=steps,
                                      spacing="uniform_trailing", eta=0.0).sample_from(None, x_T, keys))

    reference = run("ddim", 500)
    rms = lambda x: float(np.sqrt(np.mean((x - reference) ** 2)))  # noqa: E731
    dpm_error, ddim_error = rms(run("dpmpp_2m", 20)), rms(run("ddim", 20))
    assert dpm_error < 0.6 * ddim_error and dpm_error < 0.04, (dpm_error, ddim_error)


@pytest.mark.parametrize("solver", ["ddim", "dpmpp_2m"])
def test_guidance_interval_runs_the_unguided_denoiser_outside_it(cond, solver):
    unguided = lambda x, t, c: 0.5 * linear_denoise(x, t, c)  # noqa: E731
    sampler = Sampler(linear_denoise, make_schedule(), sampler=solver, num_steps=5, eta=0.0,
                          unguided=unguided, guidance_interval=(1, 3))
    np.testing.assert_array_equal(sampler.guided_steps, [False, True, True, False, False])
    keys = sample_keys(3, [0, 1])
    x_T = initial_noise(keys, SAMPLE_SHAPE)
    got = np.asarray(sampler.sample_from(cond, x_T, keys))
    c, x, before = sampler.coefficients, x_T, jnp.zeros_like(x_T)
    for k in range(5):
        t = jnp.full((2,), c.timesteps[k], jnp.int32)
        out = (linear_denoise if 1 <= k < 3 else unguided)(x, t, cond)
        x0, eps = predict_x0_eps(out, x, c.at(k), "eps")
        x = ddim_update(x0, eps, c.at(k), None) if solver == "ddim" else dpmpp_2m_update(x, x0, before, c.at(k))
        before = x0
    np.testing.assert_allclose(got, np.asarray(x), rtol=1e-5, atol=1e-5)
    always = Sampler(linear_denoise, make_schedule(), sampler=solver, num_steps=5, eta=0.0)
    assert np.abs(np.asarray(always.sample_from(cond, x_T, keys)) - got).max() > 1e-2


def test_sampler_bad_input(schedule):
    cases = [(dict(sampler="euler"), "sampling.sampler: got 'euler', expected one of"),
             (dict(sampler="dpmpp_2m", num_steps=1), "expected at least 2 for sampler 'dpmpp_2m'"),
             (dict(guidance_interval=(0, 11)), r"guidance_interval: got \(0, 11\), expected None .* <= 10"),
             (dict(guidance_interval=(4, 4)), "guidance_interval: got"),
             (dict(guidance_interval=(-1, 3)), "guidance_interval: got"),
             (dict(guidance_interval=5), "guidance_interval: got 5"),
             (dict(guidance_interval=(0, 5)), "got no unguided denoiser"),
             (dict(spacing="uniform_trailing", num_steps=61), "61 steps with uniform_trailing")]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            Sampler(linear_denoise, schedule, **dict(dict(num_steps=10), **kwargs))
    assert sampler_steps("dpmpp_2m", 30) == 31  # the official uniform spacing visits 31 timesteps for 30


def test_fp16_checkpoint_buffers_give_the_reference_last_sigma():
    model = model_config("tiny")
    half = {name: value.astype(np.float16) for name, value in make_schedule()._asdict().items()}
    loaded = process_from_buffers(half, model, source="i2v_512_v1.ckpt")
    # The reference (VideoCrafter1 I2V, an fp16 file): ᾱ₀ 0.99915 → 0.99902, the last σ 0.01805 instead of 0.02065.
    assert loaded.schedule.alphas_cumprod[0] == pytest.approx(0.99902, abs=1e-5)
    np.testing.assert_allclose([step_coefficients(loaded, 50).sigmas[-1],
                                step_coefficients(process_from_config(model), 50).sigmas[-1]],
                               [0.01805, 0.02065], atol=5e-5)
