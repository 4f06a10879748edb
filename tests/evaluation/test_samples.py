"""Sample discovery and reading: official names, preference order, frame folders, unreadable files."""

import os

import numpy as np
import pytest
from PIL import Image

from stylecrafter_jax.errors import DataError
from stylecrafter_jax.evaluation.samples import find_sample, read_sample, sample_name, saved_prompt
from stylecrafter_jax.sampling.io import video_codec, write_mp4
from tests.evaluation.tiny_eval import moving_video


def _png(path, frame):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(frame).save(path)


def test_names_and_preference_order(tmp_path):
    run = str(tmp_path)
    assert sample_name(7, 2) == "0007_2"
    assert find_sample(run, "0000_0") is None
    video = moving_video(0, 3, 16, 24)
    _png(os.path.join(run, "samples", "0000_0.png"), video[0])
    assert find_sample(run, "0000_0").endswith(os.path.join("samples", "0000_0.png"))
    for t, frame in enumerate(video):
        _png(os.path.join(run, "frames", "0000_0", f"frame{t:03d}.png"), frame)
    assert find_sample(run, "0000_0") == os.path.join(run, "frames", "0000_0")
    write_mp4(os.path.join(run, "samples", "0000_0.mp4"), video, 10, video_codec())
    assert find_sample(run, "0000_0") == os.path.join(run, "samples", "0000_0.mp4")
    assert find_sample(os.path.join(run, "samples"), "0000_0").endswith("0000_0.mp4")  # the samples folder itself


def test_read_frames_folder_video_and_image(tmp_path):
    video = moving_video(1, 3, 16, 24)
    for t in (2, 0, 1):  # written out of order, read in file-name order
        _png(str(tmp_path / "f" / f"frame{t:03d}.png"), video[t])
    np.testing.assert_array_equal(read_sample(str(tmp_path / "f")), video)
    write_mp4(str(tmp_path / "v.mp4"), video, 10, video_codec())
    decoded = read_sample(str(tmp_path / "v.mp4"))
    assert decoded.shape == (3, 16, 24, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - video).mean() < 12  # lossy, but the same pictures
    _png(str(tmp_path / "i.png"), video[0])
    np.testing.assert_array_equal(read_sample(str(tmp_path / "i.png")), video[:1])


def test_unreadable_inputs_raise_data_errors(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png"):
        read_sample(str(tmp_path / "broken.png"))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match="broken.mp4"):
        read_sample(str(tmp_path / "broken.mp4"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DataError, match="holds no image"):
        read_sample(str(tmp_path / "empty"))
    _png(str(tmp_path / "mixed" / "a.png"), np.zeros((4, 4, 3), np.uint8))
    _png(str(tmp_path / "mixed" / "b.png"), np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(DataError, match="differ in size"):
        read_sample(str(tmp_path / "mixed"))


def test_saved_prompt_from_run_or_samples_folder(tmp_path):
    os.makedirs(tmp_path / "prompts")
    (tmp_path / "prompts" / "0001_0.txt").write_text("A cat.")
    assert saved_prompt(str(tmp_path), "0001_0") == "A cat."
    assert saved_prompt(str(tmp_path / "samples"), "0001_0") == "A cat."
    assert saved_prompt(str(tmp_path), "0002_0") is None
