"""Builders and the build CLI: exact round trips, bad input counted with first paths, errors, the summary."""

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylecrafter_jax.data.build.__main__ import main
from stylecrafter_jax.data.build.dataset import REPORT_FILE, build_dataset
from stylecrafter_jax.data.readers import open_tfds
from stylecrafter_jax.errors import DataError


def _by_path(source):
    return {source[i]["path"].decode(): source[i] for i in range(len(source))}


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_round_trip_exactly(image_source, image_data_dir):
    records = _by_path(open_tfds(image_data_dir, "style_images"))
    assert sorted(records) == [f"img{i}.png" for i in range(10)]
    for key, record in records.items():
        original = np.asarray(Image.open(image_source / key).convert("RGB"))
        h, w = original.shape[:2]
        if min(h, w) > 100:  # bounded with the reference's bilinear short-side resize
            size = (100, int(100 * w / h)) if h <= w else (int(100 * h / w), 100)
            original = np.asarray(Image.fromarray(original).resize(size[::-1], Image.BILINEAR))
        np.testing.assert_array_equal(record["image"], original)
        assert record["caption"].decode() == (image_source / key).with_suffix(".txt").read_text()
        assert record["label"] == b""
        np.testing.assert_array_equal(record["original_size"], [h, w])
    assert records["img3.png"]["image"].shape == (100, 133, 3)  # 150x200 bounded to short side 100
    report = json.loads((Path(image_data_dir) / "style_images" / "1.0.0" / REPORT_FILE).read_text())
    assert report["written"] == 10 and report["skipped"] == {}


def test_videos_round_trip_exactly(video_source, video_data_dir, media):
    records = _by_path(open_tfds(video_data_dir, "videos"))
    assert sorted(records) == sorted(f"page{i % 2}/v{i}.mp4" for i in range(6))
    for i in range(6):
        record = records[f"page{i % 2}/v{i}.mp4"]
        frames, fps = media.decode_video(video_source / f"page{i % 2}" / f"v{i}.mp4")
        assert len(record["frames"]) == len(frames) == [24, 20, 30, 16, 24, 40][i]
        for stored, expected in zip(record["frames"], frames):
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(stored))), expected)
        assert record["fps"] == np.float32(fps) == 24.0
        assert record["caption"].decode() == f"a watercolor painting of a dog {i}"
        np.testing.assert_array_equal(record["original_size"], [64, 96])


def test_video_frames_are_bounded_and_capped(tmp_path, media):
    (tmp_path / "src").mkdir()
    frames = media.video_frames(np.random.default_rng(0), 12, 80, 120)
    media.write_video(tmp_path / "src" / "a.mp4", frames)
    (tmp_path / "src" / "a.txt").write_text("a clip")
    options = dataclasses.replace(media.tiny_build, video_max_frames=8)
    build_dataset("videos", str(tmp_path / "src"), str(tmp_path / "out"), options=options)
    record = open_tfds(str(tmp_path / "out"), "videos")[0]
    decoded, _ = media.decode_video(tmp_path / "src" / "a.mp4")
    assert len(record["frames"]) == 8
    expected = np.asarray(Image.fromarray(decoded[7]).resize((96, 64), Image.BILINEAR))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(record["frames"][7]))), expected)


def test_jpeg_storage_is_close(image_source, tmp_path, media):
    options = dataclasses.replace(media.tiny_build, image_format="jpeg", image_quality=95)
    build_dataset("images", str(image_source), str(tmp_path), options=options)
    record = _by_path(open_tfds(str(tmp_path), "style_images"))["img0.png"]
    original = np.asarray(Image.open(image_source / "img0.png").convert("RGB")).astype(np.float32)
    assert record["image"].shape == original.shape
    assert np.abs(record["image"] - original).mean() < 2.0


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory, media):
    """Two good images and one of each kind of bad input, listed in a CSV."""
    source = tmp_path_factory.mktemp("bad_images")
    rng = np.random.default_rng(0)
    for name, size in (("good0.png", (80, 90)), ("good1.png", (70, 70)), ("small.png", (40, 90)),
                       ("latin1.png", (80, 80))):
        Image.fromarray(media.pattern(rng, *size)).save(source / name)
    (source / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (source / "truncated.png").write_bytes(_png(media.pattern(rng, 80, 80))[:200])
    rows = [b"good0.png,a cat", b"missing.png,gone", b"corrupt.jpg,broken", b"truncated.png,cut",
            b"small.png,tiny", b"latin1.png,caf\xe9", b"good1.png,a dog"]
    (source / "captions.csv").write_bytes(b"path,caption\n" + b"\n".join(rows) + b"\n")
    return source


def test_bad_images_are_skipped_with_counts_and_first_paths(bad_images, tmp_path, media):
    report = build_dataset("images", str(bad_images), str(tmp_path), str(bad_images / "captions.csv"),
                           options=media.tiny_build)
    assert report.written == 2
    assert report.skipped == {"missing file": 1, "corrupt image": 2, "too small": 1, "non-UTF-8 caption": 1}
    assert report.first_paths["corrupt image"] == ["corrupt.jpg", "truncated.png"]
    assert report.first_paths["too small"] == ["small.png"]
    assert report.first_paths["missing file"] == ["missing.png"]
    assert report.first_paths["non-UTF-8 caption"] == ["latin1.png"]
    assert sorted(_by_path(open_tfds(str(tmp_path), "style_images"))) == ["good0.png", "good1.png"]


def test_small_images_are_kept_for_upscaling_when_configured(bad_images, tmp_path, media):
    options = dataclasses.replace(media.tiny_build, upscale_small=True)
    report = build_dataset("images", str(bad_images), str(tmp_path), str(bad_images / "captions.csv"), options=options)
    assert report.written == 3 and report.upscaled == 1 and report.upscaled_paths == ["small.png"]
    assert "too small" not in report.skipped
    record = _by_path(open_tfds(str(tmp_path), "style_images"))["small.png"]
    assert record["image"].shape == (40, 90, 3)  # stored as is; the read-time resize upscales it


def test_bad_videos_are_skipped_with_counts_and_first_paths(tmp_path, media):
    source = tmp_path / "src"
    source.mkdir()
    rng = np.random.default_rng(0)
    media.write_video(source / "good.mp4", media.video_frames(rng, 10))
    media.write_video(source / "h264.mp4", media.video_frames(rng, 6), codec="libx264")
    media.write_video(source / "one.mp4", media.video_frames(rng, 1))
    media.write_video(source / "three.mp4", media.video_frames(rng, 3))
    (source / "empty.mp4").write_bytes(b"")
    (source / "corrupt.mp4").write_bytes((source / "good.mp4").read_bytes()[:300])
    media.write_video(source / "latin1.mp4", media.video_frames(rng, 8))
    rows = [b"good,a dog", b"h264,a cat", b"one,one frame", b"three,three frames", b"empty,zero bytes",
            b"corrupt,cut", b"gone,missing", b"latin1,caf\xe9"]
    (source / "webvid.csv").write_bytes(b"videoid,name\n" + b"\n".join(rows) + b"\n")
    report = build_dataset("videos", str(source), str(tmp_path / "out"), str(source / "webvid.csv"),
                           options=media.tiny_build)
    assert report.written == 2
    assert report.skipped == {"too few frames": 2, "corrupt video": 2, "missing file": 1, "non-UTF-8 caption": 1}
    assert report.first_paths["too few frames"] == ["one.mp4", "three.mp4"]
    assert report.first_paths["corrupt video"] == ["empty.mp4", "corrupt.mp4"]
    assert report.first_paths["missing file"] == ["gone.mp4"]
    records = _by_path(open_tfds(str(tmp_path / "out"), "videos"))
    assert sorted(records) == ["good.mp4", "h264.mp4"] and len(records["h264.mp4"]["frames"]) == 6


def test_source_with_nothing_usable_is_an_error(tmp_path, media):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.jpg").write_bytes(b"junk")
    (tmp_path / "src" / "a.txt").write_text("a cat")
    with pytest.raises(DataError, match=r"no usable images:\n.*\n.*\n  corrupt image: 1 \(first: a.jpg\)"):
        build_dataset("images", str(tmp_path / "src"), str(tmp_path / "out"), options=media.tiny_build)
    assert not (tmp_path / "out" / "style_images" / "1.0.0").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable videos"):
        build_dataset("videos", str(tmp_path / "empty"), str(tmp_path / "out"), options=media.tiny_build)


def test_existing_dataset_needs_overwrite(image_source, tmp_path, media):
    build_dataset("images", str(image_source), str(tmp_path), options=media.tiny_build)
    with pytest.raises(DataError, match="already exists"):
        build_dataset("images", str(image_source), str(tmp_path), options=media.tiny_build)
    report = build_dataset("images", str(image_source), str(tmp_path), options=media.tiny_build, overwrite=True)
    assert report.written == 10


def test_worker_processes_write_the_same_records(image_source, image_data_dir, tmp_path, media):
    options = dataclasses.replace(media.tiny_build, workers=2)
    build_dataset("images", str(image_source), str(tmp_path), options=options)
    one, two = open_tfds(image_data_dir, "style_images"), open_tfds(str(tmp_path), "style_images")
    assert [one[i]["path"] for i in range(10)] == [two[i]["path"] for i in range(10)]
    for i in range(10):
        np.testing.assert_array_equal(one[i]["image"], two[i]["image"])


def test_cli_prints_the_summary(bad_images, tmp_path, capsys):
    code = main(["--kind", "images", "--source", str(bad_images), "--out", str(tmp_path), "--captions",
                 str(bad_images / "captions.csv"), "--image-min-side", "64", "--image-max-side", "100"])
    out = capsys.readouterr().out
    assert code == 0
    assert "records written: 2\nfiles skipped: 5\n" in out
    assert "  corrupt image: 2 (first: corrupt.jpg, truncated.png)" in out
    code = main(["--kind", "images", "--source", str(bad_images), "--out", str(tmp_path)])
    assert code == 1 and "already exists" in capsys.readouterr().err
