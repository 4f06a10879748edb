"""Per-example transforms: the target is the centre crop, the style a crop at the larger scale, clips by the rules."""

import numpy as np
import pytest

from stylecrafter_jax.data.augment import clip_indices, resize_short_side, sample_clip, style_crop, target_crop
from stylecrafter_jax.data.captions import FIXED_RULES
from stylecrafter_jax.data.synthetic import SyntheticImages, SyntheticVideos
from stylecrafter_jax.data.transforms import CaptionCleaner, ImageTransform, StyleReference, VideoTransform
from stylecrafter_jax.errors import ConfigError

CLEANER = CaptionCleaner(FIXED_RULES)


def test_image_transform():
    record = SyntheticImages(4, (90, 120))[2]
    transform = ImageTransform((64, 64), StyleReference(100, 64, 0), CLEANER)
    out = transform(record, np.random.default_rng(7))
    np.testing.assert_array_equal(out["image"], target_crop(record["image"], (64, 64)))
    expected, (top, left) = style_crop(record["image"], 100, 64, 0, np.random.default_rng(7))
    np.testing.assert_array_equal(out["style"], expected)
    np.testing.assert_array_equal(out["style"], resize_short_side(record["image"], 100)[top:top + 64, left:left + 64])
    assert out["caption"] == "synthetic image 2"  # "a painting of " removed


def test_video_transform_samples_a_clip_and_styles_from_its_frame():
    record = SyntheticVideos(2, 30, (64, 90), fps=25.0)[1]
    transform = VideoTransform(4, (2, 5), (48, 64), "first", StyleReference(80, 48, 0), CLEANER)
    out = transform(record, np.random.default_rng(11))
    rng = np.random.default_rng(11)
    start, stride = sample_clip(30, 4, (2, 5), rng)
    frames = [record["frames"][i] for i in clip_indices(start, stride, 4, 30)]
    np.testing.assert_array_equal(out["video"], np.stack([target_crop(f, (48, 64)) for f in frames]))
    np.testing.assert_array_equal(out["style"], style_crop(frames[0], 80, 48, 0, rng)[0])
    assert out["frame_stride"] == stride and 2 <= stride <= 5
    assert out["fps"] == np.float32(25 // stride)
    capped = VideoTransform(4, (2, 2), (48, 64), "middle", StyleReference(80, 48, 0), CLEANER, fps_max=10.0)
    assert capped(record, np.random.default_rng(0))["fps"] == 10.0


def test_caption_cleaner_decodes_bytes():
    assert CaptionCleaner((r" of x$",), tidy=False)("a café of x".encode()) == "a café"


@pytest.mark.parametrize("kwargs,match", [(dict(style_frame="last"), "style_frame"), (dict(stride_range=(3, 2)), "stride"),
                                          (dict(num_frames=0), "num_frames")])
def test_video_transform_rejects_bad_config(kwargs, match):
    base = dict(num_frames=4, stride_range=(1, 2), size=(8, 8), style_frame="random",
                style=StyleReference(16, 8, 0), captions=CLEANER)
    with pytest.raises(ConfigError, match=match):
        VideoTransform(**{**base, **kwargs})


def test_style_reference_rejects_a_crop_above_the_resize():
    with pytest.raises(ConfigError, match="crop 900 with style resize 800"):
        StyleReference(800, 900, 224)
