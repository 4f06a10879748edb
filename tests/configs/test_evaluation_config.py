"""configs/evaluation.py: modes, tiny variants, DINO sizes, bad args."""

import pytest

from configs.evaluation import get_config
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.dino import DinoViT
from stylecrafter_jax.models.sizes import dino_config


def test_modes_and_sizes():
    video, image, tiny = get_config(), get_config("image"), get_config("video,tiny")
    assert (video.mode, video.frames, video.clip.size, video.flow.method) == ("video", 16, "full", "dis")
    assert (image.frames, image.clip.format) == (1, "open_clip")
    assert (tiny.frames, tiny.clip.size, tiny.dino.model.hidden_size) == (4, "tiny", 32)
    assert DinoViT(**dino_config("full")) == DinoViT()  # the defaults are ViT-B/16


@pytest.mark.parametrize("arg", ["movie", "video,small", "video,tiny,x"])
def test_bad_args(arg):
    with pytest.raises(ConfigError, match="config arg"):
        get_config(arg)
