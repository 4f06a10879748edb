"""Tests of the schedule (scaled-linear, ZTSNR), q_sample, eps/v/x0 conversions, the rescale and the buffers."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from configs.toy import get_config as toy_config
from stylecrafter_jax.models.sizes import model_config
from stylecrafter_jax.diffusion.schedule import (check_schedule_buffers, make_schedule, predict_eps_from_v,
                                                 predict_x0_from_eps, predict_x0_from_v, process_from_buffers,
                                                 process_from_config, q_sample, rescale_curve, schedule_from_config,
                                                 velocity)
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError, ShapeError


@pytest.fixture(scope="module")
def schedule():
    return make_schedule()


@pytest.fixture(scope="module")
def diffusers_scheduler():
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1,
                         set_alpha_to_one=False, clip_sample=False, prediction_type="epsilon")


def official_buffers():
    """The twelve DDPM buffers as VideoCrafter's register_schedule builds them (torch float64 -> float32)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    ac = torch.cumprod(alphas, 0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    buffers = {
        "betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": ac.sqrt(), "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - ac).log(), "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1.0).sqrt(), "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_var.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
    }
    return {name: value.float() for name, value in buffers.items()}


def test_reference_check_values(schedule):
    assert schedule.num_timesteps == 1000
    assert all(buf.dtype == np.float32 and buf.shape == (1000,) for buf in schedule)
    np.testing.assert_allclose(schedule.alphas_cumprod[[0, 1, 981, 999]],
                               [0.99915, 0.998296, 0.0057755, 0.0046601], rtol=2e-5)
    assert schedule.alphas_cumprod_prev[0] == 1.0
    assert schedule.posterior_variance[0] == 0.0


def test_buffers_equal_official_formulas(schedule):
    for name, expected in official_buffers().items():
        np.testing.assert_allclose(getattr(schedule, name), expected.numpy(), rtol=1e-6, atol=1e-12,
                                   err_msg=name)


def test_schedule_equals_diffusers(schedule, diffusers_scheduler):
    # diffusers builds betas and the cumulative product in float32, hence the looser tolerance.
    np.testing.assert_allclose(schedule.betas, diffusers_scheduler.betas.numpy(), rtol=1e-6)
    np.testing.assert_allclose(schedule.alphas_cumprod, diffusers_scheduler.alphas_cumprod.numpy(), rtol=2e-5)


def test_q_sample_equals_diffusers_add_noise(schedule, diffusers_scheduler):
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((3, 2, 4, 4, 4)).astype(np.float32)
    noise = rng.standard_normal(x0.shape).astype(np.float32)
    t = np.array([0, 500, 999])
    got = q_sample(schedule, x0, t, noise)
    want = diffusers_scheduler.add_noise(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t))
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4, atol=1e-5)


def test_predict_x0_inverts_q_sample(schedule):
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((3, 4, 4, 4)).astype(np.float32)
    noise = rng.standard_normal(x0.shape).astype(np.float32)
    t = np.array([1, 400, 999])
    x_t = q_sample(schedule, x0, t, noise)
    np.testing.assert_allclose(np.asarray(predict_x0_from_eps(schedule, x_t, t, noise)), x0, atol=2e-5)


def test_check_accepts_official_buffers_and_ignores_other_keys(schedule):
    state_dict = dict(official_buffers(), **{"model.diffusion_model.out.2.weight": torch.zeros(4, 320, 3, 3)})
    check_schedule_buffers(state_dict, schedule)
    check_schedule_buffers(state_dict)


def test_check_reports_every_problem(schedule):
    buffers = official_buffers()
    buffers["alphas_cumprod"] = buffers["alphas_cumprod"].clone()
    buffers["alphas_cumprod"][981] *= 1.01
    del buffers["posterior_mean_coef2"]
    buffers["betas"] = buffers["betas"][:999]
    with pytest.raises(CheckpointMismatchError) as info:
        check_schedule_buffers(buffers, schedule, source="model.ckpt")
    message = str(info.value)
    assert "model.ckpt" in message
    assert "'alphas_cumprod': 1 of 1000 values differ, worst at index 981" in message
    assert "missing buffer 'posterior_mean_coef2'" in message
    assert "'betas': shape (999,), expected (1000,)" in message
    assert "sqrt_alphas_cumprod" not in message


def test_check_rejects_a_different_schedule():
    other = make_schedule(linear_start=0.0001, linear_end=0.02)
    with pytest.raises(CheckpointMismatchError, match="'betas'"):
        check_schedule_buffers(other._asdict())


def test_model_configs_carry_their_schedule():
    reference = schedule_from_config(model_config("full"))
    check_schedule_buffers(reference._asdict())  # the official buffers, exactly
    toy = schedule_from_config(toy_config().model)
    # The pixel-space toy ends noisier: its t = T keeps 1.5% of the image, not the reference's 6.8%.
    assert reference.sqrt_alphas_cumprod[-1] == pytest.approx(0.0683, abs=1e-4)
    assert toy.sqrt_alphas_cumprod[-1] == pytest.approx(0.0152, abs=1e-4)


def test_bad_input(schedule):
    x = np.zeros((2, 4, 4, 4), np.float32)
    with pytest.raises(ShapeError, match=r"timesteps t has shape \(3,\), expected \(2,\)"):
        q_sample(schedule, x, np.array([1, 2, 3]), x)
    with pytest.raises(ShapeError, match="noise has shape"):
        q_sample(schedule, x, np.array([1, 2]), x[:1])
    with pytest.raises(ShapeError, match="eps has shape"):
        predict_x0_from_eps(schedule, x, np.array([1, 2]), x[..., :2])
    with pytest.raises(ConfigError, match="num_timesteps"):
        make_schedule(num_timesteps=1)
    with pytest.raises(ConfigError, match="linear_start/linear_end"):
        make_schedule(linear_start=0.02, linear_end=0.01)
    with pytest.raises(ConfigError, match="zero_terminal_snr: needs prediction 'v'"):
        make_schedule(zero_terminal_snr=True)
    with pytest.raises(ConfigError, match="model.diffusion.prediction: got 'x0'"):
        make_schedule(prediction="x0")
    for key, value, message in [("rescale", "linear", "model.diffusion.rescale: got 'linear'"),
                                ("rescale_base", 1.5, "rescale_base: got 1.5"),
                                ("rescale_turning_step", 2000, "rescale_turning_step: got 2000")]:
        model = dynamicrafter_config()
        model.diffusion[key] = value
        with pytest.raises(ConfigError, match=message):
            process_from_config(model)


def dynamicrafter_config(rescale="dynamic", base=0.7):
    model = model_config("tiny")
    model.diffusion.update(dict(prediction="v", zero_terminal_snr=True, rescale=rescale, rescale_base=base))
    return model


def reference_ztsnr_alphas_cumprod():
    """Lin et al. Alg. 1 on the scaled-linear betas, step by step as the reference code writes it (float64)."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    root = np.sqrt(np.cumprod(1.0 - betas))
    root_0, root_T = root[0].copy(), root[-1].copy()
    root = (root - root_T) * (root_0 / (root_0 - root_T))
    alphas = np.concatenate([root[:1] ** 2, root[1:] ** 2 / root[:-1] ** 2])
    return np.cumprod(alphas), 1.0 - alphas


def test_zero_terminal_snr_schedule():
    ztsnr = make_schedule(zero_terminal_snr=True, prediction="v")
    alphas_cumprod, betas = reference_ztsnr_alphas_cumprod()
    assert ztsnr.alphas_cumprod[-1] == 0.0 and ztsnr.betas[-1] == 1.0
    np.testing.assert_allclose(ztsnr.alphas_cumprod, alphas_cumprod, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ztsnr.betas, betas, rtol=1e-6)
    # The reference's table: t = 0 unchanged, then 0.981010, 0.242359, 8.5788e-5, 6.8866e-5; β_998 = 0.751137.
    np.testing.assert_allclose(ztsnr.alphas_cumprod[[0, 19, 499, 979, 981]],
                               [0.99915, 0.981010, 0.242359, 8.5788e-5, 6.8866e-5], rtol=2e-5)
    assert ztsnr.betas[998] == pytest.approx(0.751137, abs=1e-6)
    # diffusers' own rescale (float32 torch) agrees.
    ref = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                        rescale_betas_zero_snr=True)
    np.testing.assert_allclose(ztsnr.alphas_cumprod, ref.alphas_cumprod.numpy(), rtol=1e-4, atol=1e-7)
    # v-prediction models register the two reciprocal buffers as zeros; the rest is finite.
    assert not ztsnr.sqrt_recip_alphas_cumprod.any() and not ztsnr.sqrt_recipm1_alphas_cumprod.any()
    assert all(np.isfinite(buffer).all() for buffer in ztsnr)


def test_v_eps_x0_conversions_round_trip():
    schedule = make_schedule(zero_terminal_snr=True, prediction="v")
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((4, 2, 4, 4)).astype(np.float32)
    noise = rng.standard_normal(x0.shape).astype(np.float32)
    t = np.array([0, 400, 998, 999])
    x_t = q_sample(schedule, x0, t, noise)
    v = velocity(schedule, x0, t, noise)
    np.testing.assert_allclose(np.asarray(predict_x0_from_v(schedule, x_t, t, v)), x0, atol=2e-5)
    np.testing.assert_allclose(np.asarray(predict_eps_from_v(schedule, x_t, t, v)), noise, atol=2e-5)
    np.testing.assert_allclose(np.asarray(v[-1]), -x0[-1], atol=1e-6)  # at ᾱ = 0: v = −x0 and x_t = ε
    eps_schedule = make_schedule()
    ref = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    want = ref.get_velocity(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t))
    np.testing.assert_allclose(np.asarray(velocity(eps_schedule, x0, t, noise)), want.numpy(), atol=2e-5)
    x_t = q_sample(eps_schedule, x0, t, noise)
    v = velocity(eps_schedule, x0, t, noise)
    np.testing.assert_allclose(np.asarray(predict_x0_from_eps(eps_schedule, x_t, t, predict_eps_from_v(
        eps_schedule, x_t, t, v))), np.asarray(predict_x0_from_v(eps_schedule, x_t, t, v)), atol=1e-3)


def test_rescale_curve_and_process_from_config():
    curve = rescale_curve(1000, 0.3, 400)
    assert curve.shape == (1400,) and curve.dtype == np.float32
    t = np.arange(1400)
    np.testing.assert_allclose(curve, np.where(t < 400, 1.0 - 0.7 * t / 399, 0.3), rtol=1e-6)
    process = process_from_config(dynamicrafter_config(base=0.3))
    assert (process.prediction, process.rescale) == ("v", "dynamic")
    np.testing.assert_array_equal(process.scale_arr, curve)
    assert process.schedule.alphas_cumprod[-1] == 0.0
    plain = process_from_config(model_config("tiny"))
    assert (plain.prediction, plain.rescale, plain.scale_arr) == ("eps", "none", None)
    check_schedule_buffers(plain.schedule._asdict())


def test_process_from_buffers_uses_the_checkpoint_values():
    model = dynamicrafter_config(rescale="use_scale")
    expected = process_from_config(model)
    half = {name: value.astype(np.float16) for name, value in expected.schedule._asdict().items()}
    half["scale_arr"] = expected.scale_arr.astype(np.float16)
    half["model.diffusion_model.out.2.weight"] = np.zeros((4, 8), np.float16)
    process = process_from_buffers(half, model, source="i2v.ckpt")
    np.testing.assert_array_equal(process.schedule.alphas_cumprod, half["alphas_cumprod"].astype(np.float32))
    assert process.schedule.alphas_cumprod[0] != expected.schedule.alphas_cumprod[0]  # fp16-rounded, as loaded
    assert process.schedule.alphas_cumprod.dtype == np.float32 and process.scale_arr.dtype == np.float32
    np.testing.assert_array_equal(process.scale_arr, half["scale_arr"].astype(np.float32))
    assert (process.prediction, process.rescale) == ("v", "use_scale")
    no_buffers = process_from_buffers({"model.diffusion_model.out.2.weight": np.zeros(3)}, model)
    np.testing.assert_array_equal(no_buffers.schedule.alphas_cumprod, expected.schedule.alphas_cumprod)
    np.testing.assert_array_equal(no_buffers.scale_arr, expected.scale_arr)


def test_process_from_buffers_refuses_another_schedule():
    model = dynamicrafter_config()
    buffers = dict(process_from_config(model).schedule._asdict(), scale_arr=rescale_curve(1000, 0.7))
    eps_config = model_config("tiny")
    with pytest.raises(CheckpointMismatchError) as info:
        process_from_buffers({k: v for k, v in buffers.items() if k != "scale_arr"}, eps_config, source="dc512.ckpt")
    message = str(info.value)
    assert "dc512.ckpt" in message and "'alphas_cumprod'" in message and "'sqrt_recip_alphas_cumprod'" in message
    with pytest.raises(CheckpointMismatchError, match="'scale_arr'"):
        process_from_buffers(dict(buffers, scale_arr=rescale_curve(1000, 0.3)), model)
    with pytest.raises(CheckpointMismatchError, match="'scale_arr' buffer .* model.diffusion.rescale is 'none'"):
        process_from_buffers(buffers, dynamicrafter_config(rescale="none"))
    partial = dict(buffers)
    del partial["betas"], partial["scale_arr"]
    with pytest.raises(CheckpointMismatchError, match="missing buffer 'betas'.*\\n  missing buffer 'scale_arr'"):
        process_from_buffers(partial, model)
