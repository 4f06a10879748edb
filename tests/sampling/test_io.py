"""Tests of the sampling output files: mp4 (decoded back with PyAV), GIF, PNG/JPEG, official names, overwrite."""

import os

import av
import numpy as np
import pytest
from PIL import Image

from stylecrafter_jax.errors import ConfigError, DataError
from stylecrafter_jax.sampling.inputs import SampleRequest, expand_samples
from stylecrafter_jax.sampling.io import (SampleWriter, style_to_uint8, video_codec, write_gif, write_image,
                                          write_mp4)


def smooth_video(frames=5, height=48, width=64):
    """A smooth moving gradient, which lossy codecs keep within a few levels."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    video = [np.stack([x / width * 200 + 10 * t, y / height * 200, np.full_like(x, 60 + 20 * t)], -1)
             for t in range(frames)]
    return np.clip(np.stack(video), 0, 255).astype(np.uint8)


def decode(path):
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        return stream.codec_context.name, float(stream.average_rate), frames


@pytest.mark.parametrize("codec", ["h264", "mpeg4"])
def test_mp4_round_trip(tmp_path, codec):
    if codec == "h264" and video_codec() != "h264":
        pytest.skip("this PyAV build has no H.264 encoder")
    video = smooth_video()
    path = str(tmp_path / "v.mp4")
    write_mp4(path, video, fps=10, codec=codec)
    name, fps, frames = decode(path)
    assert name == codec and fps == 10.0
    assert frames.shape == video.shape
    assert np.abs(frames.astype(int) - video).mean() < 3.0
    assert os.listdir(tmp_path) == ["v.mp4"]  # no temporary file left


def test_mp4_rejects_non_uint8_frames(tmp_path):
    with pytest.raises(DataError, match="expected uint8 frames"):
        write_mp4(str(tmp_path / "v.mp4"), np.zeros((2, 8, 8, 3), np.float32))
    assert not os.listdir(tmp_path)


def test_gif_has_every_frame(tmp_path):
    video = smooth_video(frames=3)
    write_gif(str(tmp_path / "v.gif"), video, fps=10)
    with Image.open(tmp_path / "v.gif") as gif:
        assert gif.n_frames == 3 and gif.size == (64, 48) and gif.info["duration"] == 100


def test_png_is_exact_and_jpeg_is_close(tmp_path):
    image = smooth_video(frames=1)[0]
    write_image(str(tmp_path / "a.png"), image)
    write_image(str(tmp_path / "a.jpg"), image)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), image)
    with Image.open(tmp_path / "a.jpg") as jpg:
        assert jpg.format == "JPEG" and np.abs(np.asarray(jpg).astype(int) - image).mean() < 3
    with pytest.raises(ConfigError, match="a.bmp"):
        write_image(str(tmp_path / "a.bmp"), image)


def test_style_to_uint8_is_the_official_save_img():
    x = np.array([-1.5, -1.0, -0.5, 0.0, 0.999, 1.0, 2.0], np.float32)
    expected = np.clip(x * 127.5 + 127.5, 0, 255).astype(np.uint8)  # save_img: truncation, not rounding
    np.testing.assert_array_equal(style_to_uint8(x), expected)
    assert style_to_uint8(np.float32(0.0)) == 127


def jobs(n_samples=1):
    requests = [SampleRequest(0, "first", ("a.png",), False), SampleRequest(1, "second", ("b.png", "c.png"), True),
                SampleRequest(2, "third", ("d.png",), True)]
    return expand_samples(requests, n_samples)


def test_official_names_for_videos(tmp_path):
    writer = SampleWriter(str(tmp_path), "video", gif=True, png_frames=True)
    first, second, third = jobs()
    rel = lambda paths: [os.path.relpath(p, tmp_path) for p in paths]  # noqa: E731
    assert rel(writer.paths(first, 2)) == ["samples/0000_0.mp4", "prompts/0000_0.txt", "style/0000.png",
                                           "samples/0000_0.gif", "frames/0000_0/frame000.png",
                                           "frames/0000_0/frame001.png"]
    assert rel(writer.style_paths(second)) == ["style/0001_00.png", "style/0001_01.png"]
    assert rel(writer.style_paths(third)) == ["style/0002_00.png"]  # a list of one keeps the _RR form


def test_official_names_for_images_and_several_samples(tmp_path):
    writer = SampleWriter(str(tmp_path), "image", gif=True, image_format="png")
    all_jobs = jobs(n_samples=2)
    rel = [os.path.relpath(p, tmp_path) for p in writer.paths(all_jobs[1], 1)]
    assert rel == ["samples/0000_1.png", "prompts/0000_1.txt"]  # references come with sample 0 only; no GIF
    assert os.path.relpath(SampleWriter(str(tmp_path), "image").sample_path(all_jobs[0]), tmp_path) == \
        "samples/0000_0.jpg"


def test_write_puts_every_file_in_place(tmp_path):
    writer = SampleWriter(str(tmp_path), "video", gif=True, png_frames=True)
    job = jobs()[1]
    video = smooth_video(frames=2, height=32, width=32)
    styles = np.stack([np.full((16, 16, 3), -1.0, np.float32), np.full((16, 16, 3), 1.0, np.float32)])
    paths = writer.write(job, video, styles)
    assert all(os.path.isfile(p) for p in paths)
    assert (tmp_path / "prompts/0001_0.txt").read_text(encoding="utf-8") == "second"
    assert np.asarray(Image.open(tmp_path / "style/0001_00.png")).max() == 0
    assert np.asarray(Image.open(tmp_path / "style/0001_01.png")).min() == 255
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "frames/0001_0/frame001.png")), video[1])
    assert decode(str(tmp_path / "samples/0001_0.mp4"))[2].shape == video.shape


def test_check_free_refuses_existing_outputs_unless_overwrite(tmp_path):
    writer = SampleWriter(str(tmp_path), "video")
    all_jobs = jobs()
    writer.check_free(all_jobs, 4, overwrite=False)
    (tmp_path / "style").mkdir()
    (tmp_path / "style" / "0001_01.png").write_bytes(b"keep me")
    with pytest.raises(DataError, match="0001_01.png.*--overwrite"):
        writer.check_free(all_jobs, 4, overwrite=False)
    writer.check_free(all_jobs, 4, overwrite=True)
    assert (tmp_path / "style" / "0001_01.png").read_bytes() == b"keep me"


def test_writer_rejects_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="sampling.mode"):
        SampleWriter(str(tmp_path), "gif")
    with pytest.raises(ConfigError, match="image format"):
        SampleWriter(str(tmp_path), "image", image_format="bmp")
    with pytest.raises(ConfigError, match="sampling.fps"):
        SampleWriter(str(tmp_path), "video", fps=0)
