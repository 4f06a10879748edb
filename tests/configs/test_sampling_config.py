"""Tests of the `sampling` config block: shipped defaults per mode and the unknown-mode error."""

import pytest

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.sampling.settings import get_sampling_config


def test_video_defaults_are_the_shipped_run():
    cfg = get_sampling_config()
    assert cfg.to_dict() == dict(mode="video", sampler="ddim", steps=50, timestep_spacing="uniform", eta=1.0,
                                 clip_x0=0.0, text_scale=15.0, style_scale=7.5, image_scale=6.0,
                                 guidance_form="official", image_cond_scale=None, guidance_rescale=0.0,
                                 guidance_interval=None, style_weight=1.0, fps=10, seed=123, height=320, width=512,
                                 frames=16)


def test_image_mode_is_one_512_frame():
    cfg = get_sampling_config("image")
    assert (cfg.mode, cfg.height, cfg.width, cfg.frames, cfg.image_scale) == ("image", 512, 512, 1, 6.0)


def test_unknown_mode_and_key_are_errors():
    with pytest.raises(ConfigError, match="sampling.mode: got 'gif'"):
        get_sampling_config("gif")
    with pytest.raises(AttributeError):
        get_sampling_config().stpes  # noqa: B018
