"""Video decoding with PyAV: frames, fps and size, per-frame conversion, frame cap, bounding, bad files."""

import numpy as np
import pytest

from stylecrafter_jax.data.build.report import SkippedItem
from stylecrafter_jax.data.build.video_decode import read_video


def test_frames_fps_size_and_options(tmp_path, media):
    frames = media.video_frames(np.random.default_rng(0), 10, 64, 96)
    media.write_video(tmp_path / "a.mp4", frames, fps=30)
    expected, fps = media.decode_video(tmp_path / "a.mp4")
    got, got_fps, size = read_video(str(tmp_path / "a.mp4"))
    assert (len(got), got_fps, size) == (10, 30.0, (64, 96)) and fps == 30.0
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have, want)
    assert np.abs(got[4].astype(int) - frames[4]).mean() < 10  # the codec kept the content
    capped, _, _ = read_video(str(tmp_path / "a.mp4"), max_side=32, max_frames=3, convert=lambda f: f.shape)
    assert capped == [(32, 48, 3)] * 3


def test_bad_files_are_skipped_items(tmp_path):
    (tmp_path / "e.mp4").write_bytes(b"")
    (tmp_path / "t.txt").write_text("not a video")
    for name in ("e.mp4", "t.txt", "missing.mp4"):
        with pytest.raises(SkippedItem) as info:
            read_video(str(tmp_path / name))
        assert info.value.reason == "corrupt video"
