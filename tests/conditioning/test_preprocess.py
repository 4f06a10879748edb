"""Style-image preprocessing: every PIL mode, reference resize/crop, kornia-equivalent 224 resize, unreadable files."""

import struct
import zlib

import numpy as np
import pytest
import torch
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing
from PIL import Image

from stylecrafter_jax.conditioning.preprocess import (CLIP_MEAN, CLIP_STD, clip_normalize, clip_pixels, clip_resize,
                                                      load_style_image, resize_center_crop, short_side_size)
from stylecrafter_jax.errors import DataError


def _random_rgb(width, height, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _reference_resize_crop(image, size=512):
    """torchvision Resize(size) then CenterCrop(size) on a PIL image, spelled out."""
    new_width, new_height = short_side_size(*image.size, size)
    resized = np.asarray(image.resize((new_width, new_height), Image.Resampling.BILINEAR))
    top, left = int(round((new_height - size) / 2.0)), int(round((new_width - size) / 2.0))
    return resized[top:top + size, left:left + size]


@pytest.mark.parametrize("width,height", [(640, 480), (300, 1000), (512, 512), (3, 7), (1, 1), (2000, 1500)])
def test_resize_and_centre_crop_equal_the_reference(width, height):
    image = _random_rgb(width, height)
    np.testing.assert_array_equal(np.asarray(resize_center_crop(image)), _reference_resize_crop(image))


def test_extreme_aspect_ratio_resizes_only_the_kept_region():
    image = _random_rgb(4200, 400)  # aspect 10.5: the reference would build a 5376x512 intermediate
    ours = np.asarray(resize_center_crop(image)).astype(int)
    assert ours.shape == (512, 512, 3)
    assert np.abs(ours - _reference_resize_crop(image).astype(int)).max() <= 1


def _save(image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_every_mode_becomes_rgb_in_minus_one_to_one(tmp_path):
    rgb = _random_rgb(96, 64)
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.full((64, 96), 7, np.uint8)))
    files = {
        "rgb": _save(rgb, tmp_path / "rgb.png"),
        "gray": _save(rgb.convert("L"), tmp_path / "gray.png"),
        "palette": _save(rgb.convert("P"), tmp_path / "palette.png"),
        "palette_transparent": _save(rgb.convert("P"), tmp_path / "palette_t.png", transparency=3),
        "cmyk": _save(rgb.convert("CMYK"), tmp_path / "cmyk.jpg", quality=95),
        "rgba": _save(rgba, tmp_path / "rgba.png"),
        "gray_alpha": _save(rgb.convert("LA"), tmp_path / "la.png"),
        "bilevel": _save(rgb.convert("1"), tmp_path / "bilevel.png"),
    }
    images = {name: load_style_image(path) for name, path in files.items()}
    for name, image in images.items():
        assert image.shape == (512, 512, 3) and image.dtype == np.float32, name
        assert image.min() >= -1.0 and image.max() <= 1.0, name
    expected_rgb = _reference_resize_crop(rgb).astype(np.float32) / 255 * 2 - 1
    np.testing.assert_array_equal(images["rgb"], expected_rgb)
    np.testing.assert_array_equal(images["rgba"], expected_rgb)  # alpha dropped, as convert("RGB") does
    for name in ("gray", "gray_alpha", "bilevel"):
        np.testing.assert_array_equal(images[name][..., 0], images[name][..., 1], err_msg=name)
        np.testing.assert_array_equal(images[name][..., 0], images[name][..., 2], err_msg=name)
    np.testing.assert_array_equal(images["gray"], images["gray_alpha"])


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 128 * 257], [255 * 257, 65535]], np.uint16)
    path = _save(Image.fromarray(levels), tmp_path / "deep.png")
    image = load_style_image(path, size=2)
    np.testing.assert_allclose(image[..., 0], np.array([[0, 128], [255, 255]]) / 255 * 2 - 1, atol=1e-6)


def test_tiny_and_huge_images(tmp_path):
    tiny = load_style_image(_save(Image.new("RGB", (1, 1), (255, 0, 0)), tmp_path / "tiny.png"))
    np.testing.assert_array_equal(tiny[..., 0], 1.0)
    np.testing.assert_array_equal(tiny[..., 1:], -1.0)
    huge = load_style_image(_save(_random_rgb(3000, 2400), tmp_path / "huge.jpg", quality=80))
    assert huge.shape == (512, 512, 3)


def _png_claiming(width, height):
    """A PNG whose header claims width x height pixels but that carries almost no data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_unreadable_files_raise_data_errors_naming_the_file(tmp_path):
    _random_rgb(64, 64).save(tmp_path / "good.jpg")
    data = (tmp_path / "good.jpg").read_bytes()
    cases = {
        "noise.png": np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes(),
        "truncated.jpg": data[:len(data) // 2],
        "empty.png": b"",
        "bomb.png": _png_claiming(30000, 30000),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "folder.png").mkdir()
    for name in [*cases, "folder.png", "missing.png"]:
        with pytest.raises(DataError, match=name):
            load_style_image(tmp_path / name)


def test_clip_resize_equals_kornias_antialiased_bicubic():
    images = np.random.default_rng(1).uniform(-1, 1, (2, 512, 512, 3)).astype(np.float32)
    ours = np.asarray(clip_resize(images))
    reference = _resize_with_antialiasing(torch.from_numpy(images).permute(0, 3, 1, 2), (224, 224))
    assert ours.shape == (2, 224, 224, 3)
    np.testing.assert_allclose(ours, reference.permute(0, 2, 3, 1).numpy(), atol=1e-5, rtol=0)


def test_clip_normalisation_and_constant_images():
    constant = np.full((1, 512, 512, 3), 0.5, np.float32)
    pixels = np.asarray(clip_pixels(constant))
    expected = (0.75 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(pixels, np.broadcast_to(expected, pixels.shape), atol=1e-5)
    np.testing.assert_allclose(np.asarray(clip_normalize(-np.ones((3,), np.float32))),
                               -np.array(CLIP_MEAN) / np.array(CLIP_STD), rtol=1e-6)
