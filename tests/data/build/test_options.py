"""BuildOptions validation."""

import pytest

from stylecrafter_jax.data.build.options import BuildOptions
from stylecrafter_jax.errors import ConfigError


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_format="webp"), "image_format='webp'"), (dict(frame_quality=0), "frame_quality=0"),
    (dict(video_min_frames=1), "video_min_frames=1"), (dict(workers=0), "workers=0"),
    (dict(image_min_side=900), "image_min_side=900 is above image_max_side=800"),
    (dict(video_max_frames=8), "video_max_frames=8 is below video_min_frames=16"), (dict(video_max_side=-1), "-1"),
])
def test_invalid_options_raise(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BuildOptions(**kwargs)


def test_defaults_follow_the_crop_sizes():
    options = BuildOptions()
    assert (options.image_max_side, options.image_min_side, options.video_max_side, options.video_min_frames) == (
        800, 512, 320, 16)
