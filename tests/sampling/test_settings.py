"""Tests of the model-dependent sampling settings: size multiples, checks, mode switching, components."""

import pytest

from configs.inference import get_config as inference_config
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.sizes import model_config
from stylecrafter_jax.sampling.settings import get_sampling_config
from stylecrafter_jax.sampling.settings import (check_sampling, pixels_per_latent, required_components,
                                                size_multiple, switch_mode)


def test_size_multiples():
    assert pixels_per_latent(model_config("full")) == 8 and size_multiple(model_config("full")) == 64
    assert size_multiple(model_config("tiny")) == 8 * 2
    pixels = model_config("tiny")
    pixels.latent = "pixels"
    assert pixels_per_latent(pixels) == 1 and size_multiple(pixels) == 2
    assert "vae" not in required_components(pixels)
    assert required_components(model_config("full")) == ("unet", "adapter", "text_encoder", "image_encoder", "vae")


def test_the_shipped_configs_pass_the_checks():
    for arg in (None, "image", "tiny", "tiny,image"):
        config = inference_config(arg)
        check_sampling(config.sampling, config.model)
    tiny = inference_config("tiny").sampling
    assert (tiny.frames, tiny.height, tiny.width, tiny.steps) == (4, 64, 64, 50)


@pytest.mark.parametrize("key, value, message", [
    ("height", 320 + 32, "sampling.height: got 352, expected a positive multiple of 64"),
    ("width", 500, "sampling.width: got 500, expected a positive multiple of 64"),
    ("width", 0, "sampling.width: got 0"),
    ("steps", 0, "sampling.steps: got 0"),
    ("eta", 1.5, "sampling.eta"),
    ("style_weight", 2.5, "sampling.style_weight"),
    ("guidance_form", "textbook", "sampling.guidance_form"),
    ("frames", 0, "sampling.frames"),
    ("sampler", "euler", "sampling.sampler: got 'euler', expected one of"),
    ("timestep_spacing", "leading", "sampling.timestep_spacing: got 'leading'"),
    ("guidance_interval", (40, 51), r"sampling.guidance_interval: got \(40, 51\), expected None .* <= 50"),
    ("guidance_rescale", -0.1, "sampling.guidance_rescale: got -0.1"),
    ("image_cond_scale", "high", "sampling.image_cond_scale: got 'high'"),
])
def test_bad_settings_name_the_key(key, value, message):
    sampling = get_sampling_config("video")
    sampling[key] = value
    with pytest.raises(ConfigError, match=message):
        check_sampling(sampling, model_config("full"))


def test_a_step_count_the_solver_cannot_run_is_refused():
    sampling = get_sampling_config("video")
    sampling.update(dict(sampler="dpmpp_2m", steps=1))
    with pytest.raises(ConfigError, match="sampling.steps: got 1, expected at least 2 for sampler 'dpmpp_2m'"):
        check_sampling(sampling, model_config("full"))
    sampling.update(dict(steps=61, timestep_spacing="uniform_trailing"))
    with pytest.raises(ConfigError, match="sampling.steps: 61 steps with uniform_trailing spacing"):
        check_sampling(sampling, model_config("full"))
    sampling.update(dict(steps=25, guidance_interval=(0, 20)))
    check_sampling(sampling, model_config("full"))


def test_image_mode_needs_one_frame():
    sampling = get_sampling_config("image")
    sampling.frames = 4
    with pytest.raises(ConfigError, match="expected 1 in image mode"):
        check_sampling(sampling, model_config("full"))


def test_switch_mode_follows_default_sizes():
    sampling = get_sampling_config("video")
    switch_mode(sampling, model_config("full"), "image")
    assert (sampling.mode, sampling.height, sampling.width, sampling.frames) == ("image", 512, 512, 1)
    switch_mode(sampling, model_config("full"), "video")
    assert (sampling.mode, sampling.height, sampling.width, sampling.frames) == ("video", 320, 512, 16)


def test_switch_mode_keeps_custom_sizes():
    tiny = inference_config("tiny")
    switch_mode(tiny.sampling, tiny.model, "image")
    assert (tiny.sampling.height, tiny.sampling.width, tiny.sampling.frames) == (64, 64, 1)
    switch_mode(tiny.sampling, tiny.model, "video")
    assert tiny.sampling.frames == tiny.model.frames == 4
    with pytest.raises(ConfigError, match="--mode"):
        switch_mode(tiny.sampling, tiny.model, "gif")
