"""Resizes and crops: torchvision's short-side rule, centre target crop, style crop at the larger scale, clips."""

import numpy as np
import pytest
from PIL import Image

from stylecrafter_jax.data.augment import (center_crop, clip_indices, cover_size, resize, resize_short_side,
                                           sample_clip, short_side_size, style_crop, target_crop, to_output)
from stylecrafter_jax.errors import ConfigError, ShapeError


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)


@pytest.mark.parametrize("h,w,short,expected", [(90, 130, 512, (512, 739)), (130, 90, 512, (739, 512)),
                                                (336, 596, 320, (320, 567)), (100, 100, 64, (64, 64))])
def test_short_side_size_truncates_like_torchvision(h, w, short, expected):
    assert short_side_size(h, w, short) == expected


@pytest.mark.parametrize("h,w,target,expected", [(336, 596, (320, 512), (320, 567)), (480, 640, (320, 512), (384, 512)),
                                                 (640, 480, (320, 512), (682, 512)), (90, 130, (64, 64), (64, 92))])
def test_cover_size(h, w, target, expected):
    assert cover_size(h, w, target) == expected


def test_resize_is_pil_bilinear(image):
    expected = np.asarray(Image.fromarray(image).resize((40, 30), Image.BILINEAR))
    np.testing.assert_array_equal(resize(image, (30, 40)), expected)
    assert resize(image, (90, 130)) is image
    with pytest.raises(ShapeError, match="uint8"):
        resize(image.astype(np.float32), (3, 4))


def test_target_is_the_centre_crop_of_the_short_side_resize(image):
    target = target_crop(image, (64, 64))
    scaled = resize_short_side(image, 64)
    assert scaled.shape == (64, 92, 3)
    np.testing.assert_array_equal(target, scaled[:, 14:78])
    np.testing.assert_array_equal(center_crop(np.arange(7 * 5).reshape(7, 5, 1).astype(np.uint8), (4, 2))[..., 0],
                                  np.arange(35).reshape(7, 5)[1:5, 1:3])
    with pytest.raises(ShapeError, match="smaller than the crop"):
        center_crop(image, (100, 10))


def test_style_reference_is_a_window_of_the_larger_scale(image):
    rng = np.random.default_rng(3)
    crops = [style_crop(image, 100, 64, 0, rng) for _ in range(20)]
    scaled = resize_short_side(image, 100)
    assert scaled.shape == (100, 144, 3)
    for crop, (top, left) in crops:
        assert crop.shape == (64, 64, 3) and 0 <= top <= 36 and 0 <= left <= 80
        np.testing.assert_array_equal(crop, scaled[top:top + 64, left:left + 64])
    assert len({offset for _, offset in crops}) > 10  # random positions
    out, (top, left) = style_crop(image, 100, 64, 32, np.random.default_rng(3))
    np.testing.assert_array_equal(out, resize(scaled[top:top + 64, left:left + 64], (32, 32)))
    with pytest.raises(ConfigError, match="larger than the style resize"):
        style_crop(image, 50, 64, 0, rng)


def test_sample_clip_follows_the_webvid_rules():
    rng = np.random.default_rng(0)
    draws = [sample_clip(200, 16, (1, 6), rng) for _ in range(300)]
    assert {stride for _, stride in draws} == {1, 2, 3, 4, 5, 6}
    assert all(0 <= start <= 200 - (stride * 15 + 1) for start, stride in draws)
    too_long = [sample_clip(40, 16, (6, 6), rng) for _ in range(50)]  # span 91 > 40: stride 40 // 16 = 2
    assert {stride for _, stride in too_long} == {2} and {start for start, _ in too_long} <= set(range(10))
    start, stride = sample_clip(16, 16, (3, 3), rng)
    assert (start, stride) == (0, 1)
    np.testing.assert_array_equal(clip_indices(2, 3, 4, 20), [2, 5, 8, 11])
    np.testing.assert_array_equal(clip_indices(0, 1, 5, 3), [0, 1, 2, 2, 2])


def test_to_output():
    pixels = np.array([0, 127, 255], np.uint8)
    assert to_output(pixels, "uint8") is pixels
    out = to_output(pixels, "float32")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, 127 / 127.5 - 1, 1.0])
    with pytest.raises(ConfigError, match="data.dtype"):
        to_output(pixels, "int8")
