"""Data-test fixtures: small images and videos written with PIL and PyAV, and tiny datasets built from them."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image

from stylecrafter_jax.data.build.dataset import build_dataset
from stylecrafter_jax.data.build.options import BuildOptions

IMAGE_SIZES = [(80, 100), (100, 80), (90, 120), (150, 200), (64, 64), (70, 110), (120, 90), (85, 85), (96, 128),
               (110, 70)]
VIDEO_FRAMES = [24, 20, 30, 16, 24, 40]
TINY_BUILD = BuildOptions(image_min_side=64, image_max_side=100, image_format="png", video_min_side=48,
                          video_max_side=64, video_min_frames=4, frame_format="png")


def pattern(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random image (codecs keep it well) as (h, w, 3) uint8."""
    coarse = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))


def write_video(path: Path, frames: np.ndarray, fps: int = 24, codec: str = "mpeg4") -> None:
    """Writes (n, h, w, 3) uint8 frames with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def decode_video(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames and the average rate of a video, decoded with PyAV directly (the test's own reference)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], float(stream.average_rate)


def video_frames(rng: np.random.Generator, count: int, height: int = 64, width: int = 96) -> np.ndarray:
    """A moving pattern: each frame shifts the previous one, so frames differ."""
    base = pattern(rng, height, width + count)
    return np.stack([base[:, t:t + width] for t in range(count)])


@pytest.fixture(scope="session")
def image_source(tmp_path_factory) -> Path:
    """Ten PNG images of assorted sizes with sidecar captions "a painting of a cat {i}"."""
    source = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(IMAGE_SIZES):
        Image.fromarray(pattern(rng, h, w)).save(source / f"img{i}.png")
        (source / f"img{i}.txt").write_text(f"a painting of a cat {i}")
    return source


@pytest.fixture(scope="session")
def image_data_dir(image_source, tmp_path_factory) -> str:
    """`style_images` built from `image_source` (PNG, short side bounded to 100)."""
    out = str(tmp_path_factory.mktemp("image_data"))
    build_dataset("images", str(image_source), out, options=TINY_BUILD)
    return out


@pytest.fixture(scope="session")
def video_source(tmp_path_factory) -> Path:
    """Six 64x96 mpeg4 videos at 24 fps under page dirs, with a WebVid-style CSV `webvid.csv` beside them."""
    source = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(1)
    with open(source / "webvid.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["videoid", "name", "page_dir"])
        for i, count in enumerate(VIDEO_FRAMES):
            (source / f"page{i % 2}").mkdir(exist_ok=True)
            write_video(source / f"page{i % 2}" / f"v{i}.mp4", video_frames(rng, count))
            writer.writerow([f"v{i}", f"a watercolor painting of a dog {i}", f"page{i % 2}"])
    return source


@pytest.fixture(scope="session")
def video_data_dir(video_source, tmp_path_factory) -> str:
    """`videos` built from `video_source` (PNG frames)."""
    out = str(tmp_path_factory.mktemp("video_data"))
    build_dataset("videos", str(video_source), out, captions=str(video_source / "webvid.csv"), options=TINY_BUILD)
    return out


@pytest.fixture(scope="session")
def media() -> SimpleNamespace:
    """The helpers above, for tests that write their own files."""
    return SimpleNamespace(pattern=pattern, write_video=write_video, decode_video=decode_video,
                           video_frames=video_frames, tiny_build=TINY_BUILD)


@pytest.fixture(scope="session")
def clip_tokenizer():
    """The CLIP tokenizer (open_clip's BPE vocabulary)."""
    from stylecrafter_jax.conditioning.tokenizer import load_tokenizer

    return load_tokenizer()
