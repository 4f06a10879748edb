"""Dense optical flow between consecutive frames with OpenCV (DIS or Farnebäck), on the host.

Flow (H, W, 2) float32 holds (dx, dy) per pixel of the first image such that first(y, x) ≈
second(y + dy, x + dx). Both methods run on 8-bit grayscale (OpenCV's BT.601 RGB → gray) and are
deterministic for given inputs. This is not the paper's flow model (not established; RAFT is common).
"""

from __future__ import annotations

import cv2
import numpy as np

from stylecrafter_jax.errors import ConfigError

METHODS = ("dis", "farneback")
_DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
# pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags: OpenCV's documented example values.
_FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)


class FlowEstimator:
    """Callable `(first, second) -> flow` for (H, W, 3) uint8 RGB frames; `method` "dis" or "farneback"."""

    def __init__(self, method: str = "dis", dis_preset: str = "medium"):
        if method not in METHODS:
            raise ConfigError(f"flow method {method!r}: expected one of {METHODS}")
        if dis_preset not in _DIS_PRESETS:
            raise ConfigError(f"flow DIS preset {dis_preset!r}: expected one of {tuple(_DIS_PRESETS)}")
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[dis_preset]) if method == "dis" else None

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        a, b = _gray(first), _gray(second)
        if self._dis is not None:
            return self._dis.calc(a, b, None).astype(np.float32)
        return cv2.calcOpticalFlowFarneback(a, b, None, *_FARNEBACK).astype(np.float32)

    def video_flows(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(forward, backward) flows of consecutive frames of (T, H, W, 3) uint8: each (T − 1, H, W, 2)."""
        forward = [self(frames[t], frames[t + 1]) for t in range(len(frames) - 1)]
        backward = [self(frames[t + 1], frames[t]) for t in range(len(frames) - 1)]
        shape = (0,) + frames.shape[1:3] + (2,)
        return (np.stack(forward) if forward else np.zeros(shape, np.float32),
                np.stack(backward) if backward else np.zeros(shape, np.float32))


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
