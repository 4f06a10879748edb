"""Video files decoded with PyAV into RGB frames (bounded size and count) and their frame rate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import av
import numpy as np

from stylecrafter_jax.data.build.media import bound_short_side
from stylecrafter_jax.data.build.report import SkippedItem


def _frame_rate(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def read_video(path: str, max_side: int = 0, max_frames: int = 0, convert: Callable[[np.ndarray], Any] | None = None
               ) -> tuple[list[Any], float, tuple[int, int]]:
    """(frames, fps, (height, width) of the source) of the first video stream of `path`.

    Frames are (h, w, 3) uint8 with the short side downscaled to at most `max_side` (0: unchanged),
    passed through `convert` (e.g. an encoder) as they are decoded; `max_frames` > 0 keeps only the
    leading frames. Raises SkippedItem("corrupt video") when the file
    cannot be opened or decoding fails part-way, and SkippedItem("unknown fps") without a frame rate.
    """
    frames: list[np.ndarray] = []
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise SkippedItem("corrupt video", path, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = _frame_rate(stream)
            size = (stream.codec_context.height, stream.codec_context.width)
            for frame in container.decode(stream):
                pixels = bound_short_side(frame.to_ndarray(format="rgb24"), max_side)
                frames.append(convert(pixels) if convert else pixels)
                if max_frames and len(frames) >= max_frames:
                    break
    except (av.FFmpegError, OSError, ValueError) as e:
        raise SkippedItem("corrupt video", path, str(e)) from e
    if fps <= 0:
        raise SkippedItem("unknown fps", path)
    return frames, fps, size
