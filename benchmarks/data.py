"""Input-pipeline throughput: examples per second per CPU core for style images and videos, and what a pod host needs.

python -m benchmarks.data [--images 48] [--videos 6] [--step-rate 1.0] [--hosts 8] [--host-cores 32]

Writes WikiArt/LAION-like JPEGs (768-1080 short side) and WebVid-like H.264 clips (336x596, 25 fps) to a
temporary folder, builds `style_images` and `videos` with the default BuildOptions (one process), then reads
them with the full-size stage configs (512 target + 800->512 style crop; 16x320x512 clips) in one decoding
thread (= one core) without worker processes. The synthetic source shows the cost of augmentation alone.
The per-host need is the global batch x step rate / hosts; cores = need / per-core rate (grain
`worker_count` ~ cores).
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

from configs.stage1 import get_config as stage1_config
from configs.stage2 import get_config as stage2_config
from stylecrafter_jax.data.build.dataset import build_dataset
from stylecrafter_jax.data.defaults import data_config
from stylecrafter_jax.data.iterators import make_iterator

IMAGE_SIZES = ((768, 1024), (1024, 768), (900, 1200), (1080, 1920), (800, 800))


def _pattern(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.int16)
    return np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int) -> None:
    """`count` JPEGs (quality 90) of assorted sizes with sidecar captions."""
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(_pattern(rng, *IMAGE_SIZES[i % len(IMAGE_SIZES)])).save(folder / f"{i}.jpg", quality=90)
        (folder / f"{i}.txt").write_text(f"a watercolor painting of a harbour number {i}")


def write_videos(folder: Path, count: int, frames: int) -> None:
    """`count` H.264 clips of `frames` 336x596 frames at 25 fps (a panning pattern) and a WebVid-style CSV."""
    rng = np.random.default_rng(1)
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["videoid", "name", "page_dir"])
        for i in range(count):
            base = _pattern(rng, 336, 596 + 2 * frames)
            with av.open(str(folder / f"{i}.mp4"), "w") as container:
                stream = container.add_stream("libx264", rate=25)
                stream.height, stream.width, stream.pix_fmt = 336, 596, "yuv420p"
                for t in range(frames):
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, 2 * t:2 * t + 596]), format="rgb24")
                    container.mux(stream.encode(frame))
                container.mux(stream.encode())
            writer.writerow([str(i), f"aerial view of a coastline, clip {i}", ""])


def _timed(fn) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def read_rate(data, batches: int) -> float:
    """Examples per second of `batches` batches after one warm-up batch, one decoding thread."""
    iterator = make_iterator(data, process_index=0, process_count=1)
    batch = next(iterator)
    size = len(batch["index"])
    _, seconds = _timed(lambda: [next(iterator) for _ in range(batches)])
    iterator.close()
    return batches * size / seconds


def _config(kind: str, source: str, data_dir: str, batch: int):
    data = stage1_config().data if kind == "images" else data_config()
    data.update(worker_count=0, read_threads=1, prefetch=2)
    data[kind].update(source=source, data_dir=data_dir, batch_size=batch)
    return data


def main() -> None:
    """Builds, reads and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--video-frames", type=int, default=150)
    parser.add_argument("--step-rate", type=float, default=1.0, help="train steps per second the pod reaches")
    parser.add_argument("--hosts", type=int, default=8, help="hosts of the pod slice")
    parser.add_argument("--host-cores", type=int, default=32, help="CPU cores per host usable for input")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ("images", "videos", "out"):
            (tmp / name).mkdir()
        write_images(tmp / "images", args.images)
        write_videos(tmp / "videos", args.videos, args.video_frames)
        _, image_build = _timed(lambda: build_dataset("images", str(tmp / "images"), str(tmp / "out")))
        _, video_build = _timed(lambda: build_dataset("videos", str(tmp / "videos"), str(tmp / "out"),
                                                      str(tmp / "videos" / "results.csv")))
        image_bytes = sum(f.stat().st_size for f in (tmp / "out" / "style_images").rglob("*.array_record*"))
        video_bytes = sum(f.stat().st_size for f in (tmp / "out" / "videos").rglob("*.array_record*"))
        rates = {
            "images (tfds)": read_rate(_config("images", "tfds", str(tmp / "out"), 8), 6),
            "images (synthetic)": read_rate(_config("images", "synthetic", "", 8), 6),
            "videos (tfds)": read_rate(_config("videos", "tfds", str(tmp / "out"), 2), 6),
            "videos (synthetic)": read_rate(_config("videos", "synthetic", "", 2), 6),
        }
    print(f"build, one process: images {args.images / image_build:.1f} files/s ({image_bytes / args.images / 1e3:.0f} kB"
          f"/record), videos {args.videos / video_build:.2f} files/s ({args.video_frames} frames, "
          f"{video_bytes / args.videos / 1e6:.1f} MB/record)")
    print("| pipeline | examples/s per core |\n|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} |")
    stage1, stage2 = stage1_config().data, stage2_config().data
    needs = {
        "stage 1 images": (stage1.images.batch_size, rates["images (tfds)"]),
        "stage 2 videos": ((1 - stage2.image_ratio) * stage2.videos.batch_size, rates["videos (tfds)"]),
        "stage 2 images": (stage2.image_ratio * stage2.images.batch_size, rates["images (tfds)"]),
    }
    print(f"\nper host at {args.step_rate} steps/s on {args.hosts} hosts:\n| stream | examples/s needed | cores needed |"
          "\n|---|---|---|")
    for name, (per_step, rate) in needs.items():
        needed = per_step * args.step_rate / args.hosts
        print(f"| {name} | {needed:.1f} | {math.ceil(needed / rate)} of {args.host_cores} |")


if __name__ == "__main__":
    main()
