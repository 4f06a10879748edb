"""configs/dynamicrafter.py and configs/videocrafter_i2v.py: the variants' model sections, tiny, bad args."""

import pytest

from configs.dynamicrafter import get_config as dynamicrafter
from configs.videocrafter_i2v import get_config as videocrafter_i2v
from stylecrafter_jax.errors import ConfigError


def test_variants_at_full_size():
    vc, dc256, dc512, dc1024 = videocrafter_i2v(), dynamicrafter("256"), dynamicrafter(), dynamicrafter("1024")
    assert dc512.model.variant == "dynamicrafter_512" and dynamicrafter("512_interp").model.variant.endswith("interp")
    assert (vc.model.unet.in_channels, vc.model.unet.concat_channels, vc.model.projector.video_length) == (4, 0, 1)
    assert (dc512.model.unet.in_channels, dc512.model.unet.concat_channels, dc512.model.projector.video_length) == (
        8, 4, 16)
    assert [c.model.unet.default_fps for c in (vc, dc256, dc512, dc1024)] == [16, 3, 24, 10]
    assert [c.model.unet.image_scale_learnable for c in (vc, dc256, dc512, dc1024)] == [False, True, False, False]
    assert (dc1024.sampling.height, dc1024.sampling.width, dc256.sampling.height) == (576, 1024, 256)
    for config in (vc, dc256):
        assert "adapter" not in config.model and not config.model.unet.style_adapter
        assert (config.model.image_encoder.token_output, config.model.image_encoder.round_to_fp16) == ("raw", False)
        assert not config.model.unet.relative_position and config.model.unet.temporal_conv


def test_tiny_variants_have_one_query_set_per_latent_frame():
    dc, vc = dynamicrafter("256,tiny"), videocrafter_i2v("tiny")
    assert dc.model.frames == dc.model.projector.video_length == 4 and vc.model.projector.video_length == 1
    assert dc.model.unet.image_tokens_per_frame == dc.model.projector.num_queries
    assert dc.model.unet.model_channels == vc.model.unet.model_channels == 32


@pytest.mark.parametrize("get_config, arg, error", [
    (dynamicrafter, "256,512", ConfigError), (dynamicrafter, "768", ValueError), (videocrafter_i2v, "512", ValueError)])
def test_bad_args(get_config, arg, error):
    with pytest.raises(error, match="config arg"):
        get_config(arg)
