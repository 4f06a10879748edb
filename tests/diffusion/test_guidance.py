"""Tests of multi-condition guidance: the batched step against separate model calls, forms, image mode."""

import jax.numpy as jnp
import numpy as np
import pytest

from stylecrafter_jax.diffusion.ddim import DDIMSampler, ddim_step, initial_noise, sample_keys, step_noise
from stylecrafter_jax.diffusion.guidance import GuidanceInputs, make_guided_denoiser, style_multipliers
from stylecrafter_jax.diffusion.schedule import make_schedule
from stylecrafter_jax.errors import ConfigError, ShapeError

B, L_TEXT, N_STYLE, WIDTH, N_CROSS, CHANNELS = 2, 77, 8, 16, 16, 4
LATENT = (B, 2, 4, 4, CHANNELS)  # (b, t, h, w, c)


def fake_model(params, x, t, context, style_scales):
    """A small deterministic eps model whose output depends on x, t, text, style tokens and the scales."""
    text, style = context[:, :L_TEXT], context[:, L_TEXT:]
    text_term = jnp.tanh(text.mean(axis=1) @ params["w_text"])
    style_term = (style_scales @ params["w_scale"])[:, None] * (style.mean(axis=1) @ params["w_style"])
    time_term = (t.astype(jnp.float32) / 1000.0)[:, None] * params["w_t"]
    bias = (text_term + style_term + time_term)[:, None, None, None, :]
    return 0.1 * x @ params["w_x"] + bias


@pytest.fixture(scope="module")
def params():
    rng = np.random.default_rng(0)
    shapes = {"w_text": (WIDTH, CHANNELS), "w_style": (WIDTH, CHANNELS), "w_scale": (N_CROSS,),
              "w_t": (CHANNELS,), "w_x": (CHANNELS, CHANNELS)}
    return {name: jnp.asarray(rng.standard_normal(shape), jnp.float32) for name, shape in shapes.items()}


@pytest.fixture(scope="module")
def inputs(params):
    rng = np.random.default_rng(1)
    draw = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)  # noqa: E731
    multipliers = style_multipliers(jnp.tanh(draw(B, N_CROSS, 1)), 1.3)
    return GuidanceInputs(params=params, text=draw(B, L_TEXT, WIDTH), empty_text=draw(1, L_TEXT, WIDTH),
                          style=draw(B, N_STYLE, WIDTH), multipliers=multipliers)


@pytest.fixture(scope="module")
def x_t():
    return jnp.asarray(np.random.default_rng(2).standard_normal(LATENT), jnp.float32), jnp.array([981, 961])


def separate_branches(inputs, x, t):
    """e_ts, e_t, e_u from three separate model calls at batch B."""
    empty = jnp.broadcast_to(inputs.empty_text, inputs.text.shape)
    with_text = jnp.concatenate([inputs.text, inputs.style], axis=1)
    with_empty = jnp.concatenate([empty, inputs.style], axis=1)
    zero = jnp.zeros_like(inputs.multipliers)
    return (fake_model(inputs.params, x, t, with_text, inputs.multipliers),
            fake_model(inputs.params, x, t, with_text, zero),
            fake_model(inputs.params, x, t, with_empty, zero))


def recording(calls):
    def model_fn(*args):
        calls.append(args[1].shape)
        return fake_model(*args)
    return model_fn


def test_video_step_is_one_batched_call_equal_to_three_separate_calls(inputs, x_t):
    x, t = x_t
    calls = []
    official = make_guided_denoiser(recording(calls), mode="video")(x, t, inputs)
    assert calls == [(3 * B,) + LATENT[1:]]
    e_ts, e_t, e_u = separate_branches(inputs, x, t)
    assert np.abs(np.asarray(e_ts - e_t)).max() > 1e-2 and np.abs(np.asarray(e_t - e_u)).max() > 1e-2
    np.testing.assert_allclose(np.asarray(official), np.asarray(e_ts + 7.5 * (e_ts - e_t) + 15.0 * (e_t - e_u)),
                               rtol=1e-5, atol=1e-5)
    # The released form written anchored at e_u has effective weights 16 and 8.5 (reference §5.4).
    np.testing.assert_allclose(np.asarray(official), np.asarray(e_u + 16.0 * (e_t - e_u) + 8.5 * (e_ts - e_t)),
                               rtol=1e-5, atol=1e-5)
    paper = make_guided_denoiser(fake_model, mode="video", text_scale=4.0, style_scale=2.0, form="paper")(x, t, inputs)
    np.testing.assert_allclose(np.asarray(paper), np.asarray(e_u + 2.0 * (e_ts - e_t) + 4.0 * (e_t - e_u)),
                               rtol=1e-5, atol=1e-5)


def test_paper_and_official_forms_differ_by_e_ts_minus_e_u(inputs, x_t):
    x, t = x_t
    official = make_guided_denoiser(fake_model, form="official")(x, t, inputs)
    paper = make_guided_denoiser(fake_model, form="paper")(x, t, inputs)
    e_ts, _, e_u = separate_branches(inputs, x, t)
    np.testing.assert_allclose(np.asarray(official - paper), np.asarray(e_ts - e_u), rtol=1e-4, atol=1e-4)


def test_image_step_is_two_branches_without_text_and_style(inputs, x_t):
    x, t = x_t
    calls = []
    guided = make_guided_denoiser(recording(calls), mode="image", image_scale=6.0)(x, t, inputs)
    assert calls == [(2 * B,) + LATENT[1:]]
    e_ts, _, e_u = separate_branches(inputs, x, t)
    np.testing.assert_allclose(np.asarray(guided), np.asarray(e_u + 6.0 * (e_ts - e_u)), rtol=1e-5, atol=1e-5)


def test_empty_text_broadcasts_over_the_batch(inputs, x_t):
    x, t = x_t
    denoise = make_guided_denoiser(fake_model)
    full = inputs._replace(empty_text=jnp.broadcast_to(inputs.empty_text, inputs.text.shape))
    np.testing.assert_array_equal(np.asarray(denoise(x, t, inputs)), np.asarray(denoise(x, t, full)))


def test_style_multipliers():
    s = jnp.array([[-0.5, 0.0, 0.9], [0.2, -0.99, 0.3]])
    expected = np.array([[0.75, 1.5, 2.85], [1.8, 0.015, 1.95]])
    np.testing.assert_allclose(np.asarray(style_multipliers(s, 1.5)), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(style_multipliers(s[..., None], 1.5)), expected, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(style_multipliers(s, 0.0)), np.zeros((2, 3)))
    with pytest.raises(ShapeError, match=r"scales has shape \(2, 3, 2\)"):
        style_multipliers(jnp.zeros((2, 3, 2)), 1.0)


def test_guided_sampler_under_jit_equals_eager_loop(inputs):
    sampler = DDIMSampler(make_guided_denoiser(fake_model), make_schedule(), num_steps=2, eta=1.0)
    keys = sample_keys(123, [0, 1])
    got = sampler.sample(inputs, keys, LATENT[1:])
    denoise, c = make_guided_denoiser(fake_model), sampler.coefficients
    x = initial_noise(keys, LATENT[1:])
    for k in range(2):
        eps = denoise(x, jnp.full((B,), c.timesteps[k], jnp.int32), inputs)
        x = ddim_step(x, eps, c.alphas[k], c.alphas_prev[k], c.sigmas[k], step_noise(keys, k, LATENT[1:]))
    np.testing.assert_allclose(np.asarray(got), np.asarray(x), rtol=1e-4, atol=1e-4)


def test_bad_input(inputs, x_t):
    x, t = x_t
    with pytest.raises(ConfigError, match="sampling.mode: got 'audio'"):
        make_guided_denoiser(fake_model, mode="audio")
    with pytest.raises(ConfigError, match="sampling.guidance_form: got 'textbook'"):
        make_guided_denoiser(fake_model, form="textbook")
    denoise = make_guided_denoiser(fake_model)
    bad = {
        "GuidanceInputs.text has shape": inputs._replace(text=inputs.text[:1]),
        "GuidanceInputs.empty_text has shape": inputs._replace(empty_text=inputs.empty_text[:, :70]),
        "GuidanceInputs.style has shape": inputs._replace(style=inputs.style[..., :8]),
        "GuidanceInputs.multipliers has shape": inputs._replace(multipliers=inputs.multipliers[:1]),
    }
    for message, wrong in bad.items():
        with pytest.raises(ShapeError, match=message):
            denoise(x, t, wrong)
    with pytest.raises(ShapeError, match="model_fn returned eps of shape"):
        make_guided_denoiser(lambda *args: fake_model(*args)[:B])(x, t, inputs)
