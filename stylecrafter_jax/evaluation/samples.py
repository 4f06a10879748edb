"""Find and read generated samples named as the official inference script (and our `sample`) name them.

A run folder holds `samples/EEEE_S.mp4` (video) or `samples/EEEE_S.jpg|png` (image), `prompts/EEEE_S.txt`
and `style/…`; `EEEE` is the entry's position in the JSON, `S` the sample number. Also accepted, in
this order of preference: a video file or a folder of frame images (`frames/EEEE_S/`, `samples/EEEE_S/`
or `EEEE_S/`, frames in file-name order), then a single image; and the samples folder itself given as
the run folder.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from stylecrafter_jax.conditioning.preprocess import to_rgb
from stylecrafter_jax.data.build.video_decode import read_video
from stylecrafter_jax.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def sample_name(entry: int, sample: int) -> str:
    """`%04d_%d`: the official file stem of sample `sample` of JSON entry `entry`."""
    return f"{entry:04d}_{sample}"


def read_rgb(path: str) -> np.ndarray:
    """(h, w, 3) uint8 of an image file, converted as PIL's convert("RGB"); DataError if unreadable."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(to_rgb(image))
    except _UNREADABLE as e:
        raise DataError(f"image {path!r} cannot be read: {type(e).__name__}: {e}") from e


def find_sample(run_dir: str, name: str) -> str | None:
    """The path of sample `name` in `run_dir` (video file, frame folder or image), or None."""
    folders = [os.path.join(run_dir, "samples"), run_dir]
    for folder in folders:
        for suffix in VIDEO_SUFFIXES:
            if os.path.isfile(os.path.join(folder, name + suffix)):
                return os.path.join(folder, name + suffix)
    for folder in (os.path.join(run_dir, "frames"), *folders):
        if os.path.isdir(os.path.join(folder, name)):
            return os.path.join(folder, name)
    for folder in folders:
        for suffix in IMAGE_SUFFIXES:
            if os.path.isfile(os.path.join(folder, name + suffix)):
                return os.path.join(folder, name + suffix)
    return None


def read_sample(path: str) -> np.ndarray:
    """(t, h, w, 3) uint8 frames of a video file, a frame folder or an image; DataError if unreadable."""
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise DataError(f"frame folder {path!r} holds no image ({', '.join(IMAGE_SUFFIXES)})")
        frames = [read_rgb(os.path.join(path, f)) for f in files]
        if len({f.shape for f in frames}) > 1:
            raise DataError(f"frame folder {path!r}: frames differ in size ({sorted({f.shape for f in frames})})")
        return np.stack(frames)
    if path.lower().endswith(VIDEO_SUFFIXES):
        frames, _, _ = read_video(path)
        if not frames:
            raise DataError(f"video {path!r} has no frame")
        return np.stack(frames)
    return read_rgb(path)[None]


def saved_prompt(run_dir: str, name: str) -> str | None:
    """The prompt the run saved for sample `name` (`prompts/EEEE_S.txt`), or None if there is none."""
    for folder in (os.path.join(run_dir, "prompts"), os.path.join(os.path.dirname(run_dir.rstrip(os.sep)), "prompts")):
        path = os.path.join(folder, name + ".txt")
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
    return None
