"""Image decoding at build time: RGB conversion, alpha over white, EXIF rotation, bounding, lossless PNG bytes."""

import numpy as np
import pytest
from PIL import Image

from stylecrafter_jax.data.build.media import bound_short_side, encode, read_image
from stylecrafter_jax.data.build.report import SkippedItem
from stylecrafter_jax.data.transforms import decode_frame


def test_modes_become_rgb_with_alpha_over_white(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[:2, :, 3], rgba[2:, :, 3] = 200, 255, 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(str(tmp_path / "a.png"))
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[3, 0], [255, 255, 255])
    Image.fromarray(np.full((3, 5), 7, np.uint8), "L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(str(tmp_path / "g.png")), np.full((3, 5, 3), 7))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "r.png", exif=exif)
    np.testing.assert_array_equal(read_image(str(tmp_path / "r.png")), np.rot90(pixels, k=-1))


def test_corrupt_image_is_a_skipped_item(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\x89PNG but no")
    with pytest.raises(SkippedItem) as info:
        read_image(str(tmp_path / "x.jpg"))
    assert info.value.reason == "corrupt image"


def test_bounding_never_upscales_and_png_is_lossless():
    pixels = np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    assert bound_short_side(pixels, 64) is pixels and bound_short_side(pixels, 0) is pixels
    assert bound_short_side(pixels, 40).shape == (40, 64, 3)
    np.testing.assert_array_equal(decode_frame(encode(pixels, "png", 95)), pixels)
    assert np.abs(decode_frame(encode(pixels, "jpeg", 95)).astype(int) - pixels).mean() < 20
