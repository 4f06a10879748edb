"""Tests of multi-condition guidance: the batched step against separate model calls, forms, image mode,
image-to-video text/image guidance and guidance_rescale."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

from stylecrafter_jax.sampling.settings import get_sampling_config
from stylecrafter_jax.diffusion.ddim import (Sampler, ddim_update, initial_noise, make_sampler, predict_x0_eps,
                                             sample_keys, step_noise)
from stylecrafter_jax.diffusion.guidance import (GuidanceInputs, make_guided_denoiser, rescale_guidance,
                                                 style_multipliers)
from stylecrafter_jax.diffusion.schedule import DiffusionProcess, make_schedule, rescale_curve
from stylecrafter_jax.errors import ConfigError, ShapeError
from tests.diffusion.references import reference_ddim_loop

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
    sampler = Sampler(make_guided_denoiser(fake_model), make_schedule(), num_steps=2, eta=1.0)
    keys = sample_keys(123, [0, 1])
    got = sampler.sample(inputs, keys, LATENT[1:])
    denoise, c = make_guided_denoiser(fake_model), sampler.coefficients
    x = initial_noise(keys, LATENT[1:])
    for k in range(2):
        eps = denoise(x, jnp.full((B,), c.timesteps[k], jnp.int32), inputs)
        x0, eps = predict_x0_eps(eps, x, c.at(k), "eps")
        x = ddim_update(x0, eps, c.at(k), step_noise(keys, k, LATENT[1:]))
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
    with pytest.raises(ShapeError, match="model_fn returned an output of shape"):
        make_guided_denoiser(lambda *args: fake_model(*args)[:B])(x, t, inputs)
    with pytest.raises(ConfigError, match="sampling.guidance_rescale: got 1.5"):
        make_guided_denoiser(fake_model, guidance_rescale=1.5)
    with pytest.raises(ConfigError, match="sampling.image_cond_scale: got 3.0, expected None here"):
        make_guided_denoiser(fake_model, image_cond_scale=3.0)(x, t, inputs)
    with pytest.raises(ShapeError, match="expected both or neither"):
        denoise(x, t, inputs._replace(multipliers=None))
    with pytest.raises(ShapeError, match=r"model_kwargs\['concat'\] has shape"):
        denoise(x, t, inputs._replace(model_kwargs={"concat": x[:1]}))


N_IMAGE = 6


@pytest.fixture(scope="module")
def i2v_inputs(params):
    """Text and image tokens (no style) plus a per-sample model input, as an image-to-video model gets them."""
    rng = np.random.default_rng(3)
    draw = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)  # noqa: E731
    return GuidanceInputs(params=params, text=draw(B, L_TEXT, WIDTH), empty_text=draw(1, L_TEXT, WIDTH),
                          image=draw(B, N_IMAGE, WIDTH), empty_image=draw(1, N_IMAGE, WIDTH),
                          model_kwargs={"concat": draw(*LATENT)})


def i2v_model(params, x, t, context, style_scales, concat):
    """A small v/eps model over text tokens, image tokens and a concatenated latent (no style branch)."""
    assert style_scales is None
    text, image = context[:, :L_TEXT], context[:, L_TEXT:]
    bias = jnp.tanh(text.mean(axis=1) @ params["w_text"]) + jnp.sin(image.mean(axis=1) @ params["w_style"])
    return 0.1 * x @ params["w_x"] + 0.2 * concat + bias[:, None, None, None, :] \
        + (t.astype(jnp.float32) / 1000.0)[:, None, None, None, None]


def i2v_branch(inputs, x, t, text, image):
    """One separate call with the prompt or "" and the real or empty image tokens."""
    texts = inputs.text if text else jnp.broadcast_to(inputs.empty_text, inputs.text.shape)
    images = inputs.image if image else jnp.broadcast_to(inputs.empty_image, inputs.image.shape)
    return i2v_model(inputs.params, x, t, jnp.concatenate([texts, images], axis=1), None,
                     inputs.model_kwargs["concat"])


def test_guidance_rescale_equals_diffusers_rescale_noise_cfg():
    rng = np.random.default_rng(4)
    guided, conditional = (rng.standard_normal(LATENT).astype(np.float32) * s for s in (3.0, 1.0))
    want = rescale_noise_cfg(torch.from_numpy(guided), torch.from_numpy(conditional), guidance_rescale=0.7)
    got = rescale_guidance(jnp.asarray(guided), jnp.asarray(conditional), 0.7)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-5, atol=1e-5)
    ratio = conditional.reshape(B, -1).std(axis=1, ddof=1) / guided.reshape(B, -1).std(axis=1, ddof=1)
    np.testing.assert_allclose(np.asarray(got), guided * (0.7 * ratio[:, None, None, None, None] + 0.3), rtol=1e-5)


def test_image_text_guidance_is_one_batched_call_equal_to_the_reference_formula(i2v_inputs, x_t):
    x, t = x_t
    calls = []

    def recording_i2v(*args, **kwargs):
        calls.append(args[1].shape)
        return i2v_model(*args, **kwargs)

    e_it, e_i, e_u = (i2v_branch(i2v_inputs, x, t, *flags) for flags in ((True, True), (False, True), (False, False)))
    assert np.abs(np.asarray(e_it - e_i)).max() > 1e-2 and np.abs(np.asarray(e_i - e_u)).max() > 1e-2
    multi = make_guided_denoiser(recording_i2v, text_scale=7.5, image_cond_scale=3.0)(x, t, i2v_inputs)
    assert calls == [(3 * B,) + LATENT[1:]]
    np.testing.assert_allclose(np.asarray(multi), np.asarray(e_u + 3.0 * (e_i - e_u) + 7.5 * (e_it - e_i)),
                               rtol=1e-5, atol=1e-5)
    plain = make_guided_denoiser(recording_i2v, text_scale=7.5)(x, t, i2v_inputs)
    assert calls[-1] == (2 * B,) + LATENT[1:]
    np.testing.assert_allclose(np.asarray(plain), np.asarray(e_u + 7.5 * (e_it - e_u)), rtol=1e-5, atol=1e-5)
    rescaled = make_guided_denoiser(i2v_model, text_scale=7.5, guidance_rescale=0.7)(x, t, i2v_inputs)
    np.testing.assert_allclose(np.asarray(rescaled), np.asarray(rescale_guidance(plain, e_it, 0.7)),
                               rtol=1e-5, atol=1e-5)
    alone = make_guided_denoiser(recording_i2v, text_scale=7.5, guided=False)(x, t, i2v_inputs)
    assert calls[-1] == LATENT
    np.testing.assert_allclose(np.asarray(alone), np.asarray(e_it), rtol=1e-6, atol=1e-6)


def test_style_with_image_tokens_keeps_the_image_with_the_text(inputs, x_t):
    x, t = x_t
    image = jnp.asarray(np.random.default_rng(5).standard_normal((B, N_IMAGE, WIDTH)), jnp.float32)
    both = inputs._replace(image=image, empty_image=jnp.zeros((1, N_IMAGE, WIDTH)))
    seen = []

    def recording_contexts(params, x, t, context, style_scales):
        seen.append((context, style_scales))
        return fake_model(params, x, t, jnp.concatenate([context[:, :L_TEXT], context[:, L_TEXT + N_IMAGE:]], 1),
                          style_scales)

    make_guided_denoiser(recording_contexts)(x, t, both)
    context, scales = seen[0]
    assert context.shape == (3 * B, L_TEXT + N_IMAGE + N_STYLE, WIDTH)
    np.testing.assert_array_equal(np.asarray(context[:2 * B, L_TEXT:L_TEXT + N_IMAGE]), np.tile(image, (2, 1, 1)))
    assert not np.asarray(context[2 * B:, L_TEXT:L_TEXT + N_IMAGE]).any()  # e_u: the empty image's tokens
    assert np.asarray(scales[:B]).all() and not np.asarray(scales[B:]).any()


def test_make_sampler_follows_the_sampling_config(inputs):
    sampling = get_sampling_config()
    sampling.update(dict(sampler="dpmpp_2m", steps=4, timestep_spacing="uniform_trailing", text_scale=4.0,
                         style_scale=2.0, guidance_rescale=0.5, guidance_interval=(0, 3)))
    process = DiffusionProcess(schedule=make_schedule(zero_terminal_snr=True, prediction="v"), prediction="v")
    sampler = make_sampler(fake_model, process, sampling)
    assert (sampler.sampler, sampler.num_steps, sampler.process.prediction) == ("dpmpp_2m", 4, "v")
    np.testing.assert_array_equal(sampler.coefficients.timesteps, [999, 749, 499, 249])
    np.testing.assert_array_equal(sampler.guided_steps, [True, True, True, False])
    guidance = dict(text_scale=4.0, style_scale=2.0)
    by_hand = Sampler(make_guided_denoiser(fake_model, guidance_rescale=0.5, **guidance), process,
                          sampler="dpmpp_2m", num_steps=4, spacing="uniform_trailing",
                          unguided=make_guided_denoiser(fake_model, guided=False, **guidance),
                          guidance_interval=(0, 3))
    keys = sample_keys(1, [0, 1])
    got = np.asarray(sampler.sample(inputs, keys, LATENT[1:]))
    np.testing.assert_allclose(got, np.asarray(by_hand.sample(inputs, keys, LATENT[1:])), rtol=1e-6, atol=1e-6)
    sampling.guidance_interval = None
    assert np.abs(np.asarray(make_sampler(fake_model, process, sampling).sample(inputs, keys, LATENT[1:]))
                  - got).max() > 1e-3


def test_guided_dynamicrafter_sampling_equals_the_reference_formulas(i2v_inputs):
    """v model, ZTSNR, trailing DDIM, dynamic rescale, multi-condition guidance and guidance_rescale together."""
    process = DiffusionProcess(schedule=make_schedule(zero_terminal_snr=True, prediction="v"), prediction="v",
                               rescale="dynamic", scale_arr=rescale_curve(1000, 0.7))
    sampling = get_sampling_config()
    sampling.update(dict(steps=4, timestep_spacing="uniform_trailing", text_scale=7.5, image_cond_scale=3.0,
                         guidance_rescale=0.7))
    keys = sample_keys(9, [0, 1])
    x_T = initial_noise(keys, LATENT[1:])
    got = np.asarray(make_sampler(i2v_model, process, sampling).sample_from(i2v_inputs, x_T, keys))

    def guided(x, t):
        e_it, e_i, e_u = (np.asarray(i2v_branch(i2v_inputs, x, t, *flags), np.float64)
                          for flags in ((True, True), (False, True), (False, False)))
        g = e_u + 3.0 * (e_i - e_u) + 7.5 * (e_it - e_i)
        ratio = e_it.reshape(B, -1).std(axis=1, ddof=1) / g.reshape(B, -1).std(axis=1, ddof=1)
        return 0.7 * g * ratio.reshape(B, 1, 1, 1, 1) + 0.3 * g

    want = reference_ddim_loop(process, "uniform_trailing", 4, x_T, keys, guided)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
