"""Output files of a sampling run, named as the official StyleCrafter inference script names them.

Layout under the output folder (`EEEE` = entry number in input order, `S` = sample number of the entry):
    samples/EEEE_S.mp4          video (h264, crf 10, 10 fps by default; MPEG-4 Part 2 if h264 is missing)
    samples/EEEE_S.jpg | .png   image mode
    samples/EEEE_S.gif          optional, videos
    frames/EEEE_S/frameNNN.png  optional, videos
    prompts/EEEE_S.txt          the prompt
    style/EEEE.png              the centre-cropped reference, or style/EEEE_RR.png for a list of references
Every file is written to a temporary name in its folder and renamed, so no half-written file is left (in a
bucket, gs://..., each is one object upload).
"""

from __future__ import annotations

import fractions
import os
import tempfile
from typing import Callable, Sequence

import av
import numpy as np
from etils import epath
from PIL import Image

from stylecrafter_jax.errors import ConfigError, DataError
from stylecrafter_jax.paths import is_url, upload_file
from stylecrafter_jax.sampling.inputs import SampleJob

IMAGE_FORMATS = ("jpg", "png")
H264_CRF = "10"
MPEG4_QSCALE = "2"


def video_codec() -> str:
    """"h264" when this PyAV build has an H.264 encoder, else "mpeg4"."""
    try:
        av.codec.Codec("h264", "w")
        return "h264"
    except (av.codec.codec.UnknownCodecError, ValueError):
        return "mpeg4"


def style_to_uint8(image: np.ndarray) -> np.ndarray:
    """A [-1, 1] float image to uint8 as the official `save_img` does: x·127.5 + 127.5, clipped, truncated."""
    return np.clip(np.asarray(image, np.float32) * 127.5 + 127.5, 0, 255).astype(np.uint8)


def _atomic(path: str, write: Callable[[str], None]) -> None:
    """Run write(tmp) on a temporary file beside `path` (same extension), then rename it to `path`; a bucket
    `path` (gs://...) is written locally, then uploaded as one object."""
    folder, name = os.path.split(path)
    if is_url(path):
        with tempfile.TemporaryDirectory(prefix="stylecrafter-sample-") as local:
            write(os.path.join(local, name))
            upload_file(os.path.join(local, name), path)
        return
    os.makedirs(folder or ".", exist_ok=True)
    tmp = os.path.join(folder, f".partial-{os.getpid()}-{name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_mp4(path: str, frames: np.ndarray, fps: int = 10, codec: str = "h264") -> None:
    """Encode uint8 frames (t, h, w, 3) to an mp4 with `codec` ("h264" at crf 10, or "mpeg4")."""
    frames = _check_frames(path, frames)

    def write(tmp: str) -> None:
        with av.open(tmp, "w", format="mp4") as container:
            stream = container.add_stream(codec, rate=fractions.Fraction(fps))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": H264_CRF} if codec == "h264" else {"qscale": MPEG4_QSCALE}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())

    _atomic(path, write)


def write_gif(path: str, frames: np.ndarray, fps: int = 10) -> None:
    """An endlessly looping GIF of uint8 frames (t, h, w, 3)."""
    frames = _check_frames(path, frames)
    images = [Image.fromarray(frame) for frame in frames]
    _atomic(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                             duration=round(1000 / fps), loop=0))


def write_image(path: str, image: np.ndarray) -> None:
    """A uint8 (h, w, 3) image as PNG or JPEG (PIL's default quality, as the official code), by extension."""
    image_format = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(os.path.splitext(path)[1].lower())
    if image_format is None:
        raise ConfigError(f"image file {path!r}: expected a .png, .jpg or .jpeg name")
    pil = Image.fromarray(np.asarray(image, np.uint8))
    _atomic(path, lambda tmp: pil.save(tmp, format=image_format))


def write_text(path: str, text: str) -> None:
    """A UTF-8 text file holding exactly `text`."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    _atomic(path, write)


def _check_frames(path: str, frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not frames.shape[0]:
        raise DataError(f"{path}: expected uint8 frames (t, h, w, 3), got {frames.dtype} {frames.shape}")
    return frames


class SampleWriter:
    """Writes the files of each sample into an output folder with the official names.

    mode: "video" or "image"; fps: frame rate of mp4 and GIF; gif / png_frames: also write those for
    videos; image_format: "jpg" (official) or "png" for images; codec: None picks `video_codec()`.
    """

    def __init__(self, root: str, mode: str, *, fps: int = 10, gif: bool = False, png_frames: bool = False,
                 image_format: str = "jpg", codec: str | None = None):
        if mode not in ("video", "image"):
            raise ConfigError(f"sampling.mode: got {mode!r}, expected 'video' or 'image'")
        if image_format not in IMAGE_FORMATS:
            raise ConfigError(f"image format: got {image_format!r}, expected one of {IMAGE_FORMATS}")
        if fps < 1:
            raise ConfigError(f"sampling.fps: got {fps!r}, expected an integer >= 1")
        self.root, self.mode, self.fps = os.fspath(root), mode, int(fps)
        self.gif, self.png_frames, self.image_format = gif, png_frames, image_format
        self.codec = codec or video_codec()

    def name(self, job: SampleJob) -> str:
        """`%04d_%d`: the entry number and the sample number."""
        return f"{job.request.entry:04d}_{job.sample}"

    def sample_path(self, job: SampleJob) -> str:
        """The mp4 of a video, or the image file."""
        ext = "mp4" if self.mode == "video" else self.image_format
        return os.path.join(self.root, "samples", f"{self.name(job)}.{ext}")

    def prompt_path(self, job: SampleJob) -> str:
        """The prompt text file."""
        return os.path.join(self.root, "prompts", f"{self.name(job)}.txt")

    def style_paths(self, job: SampleJob) -> list[str]:
        """The saved references of the job's entry (written with its first sample only)."""
        if job.sample:
            return []
        entry, request = job.request.entry, job.request
        names = [f"{entry:04d}_{i:02d}.png" for i in range(request.num_refs)] if request.listed \
            else [f"{entry:04d}.png"]
        return [os.path.join(self.root, "style", n) for n in names]

    def gif_path(self, job: SampleJob) -> str:
        """The optional GIF of a video."""
        return os.path.join(self.root, "samples", f"{self.name(job)}.gif")

    def frame_path(self, job: SampleJob, frame: int) -> str:
        """The optional PNG of one frame of a video."""
        return os.path.join(self.root, "frames", self.name(job), f"frame{frame:03d}.png")

    def paths(self, job: SampleJob, frames: int) -> list[str]:
        """Every file this job writes, for a video of `frames` frames."""
        paths = [self.sample_path(job), self.prompt_path(job), *self.style_paths(job)]
        if self.mode == "video" and self.gif:
            paths.append(self.gif_path(job))
        if self.mode == "video" and self.png_frames:
            paths += [self.frame_path(job, i) for i in range(frames)]
        return paths

    def check_free(self, jobs: Sequence[SampleJob], frames: int, overwrite: bool) -> None:
        """DataError listing the outputs of `jobs` that already exist, unless `overwrite`."""
        if overwrite:
            return
        taken = [p for job in jobs for p in self.paths(job, frames)
                 if (epath.Path(p).exists() if is_url(p) else os.path.lexists(p))]
        if taken:
            more = f" and {len(taken) - 3} more" if len(taken) > 3 else ""
            raise DataError(f"output folder {self.root!r} already holds {', '.join(map(repr, taken[:3]))}{more}; "
                            "pass --overwrite to replace them, or choose another --out")

    def write(self, job: SampleJob, pixels: np.ndarray, styles: np.ndarray) -> list[str]:
        """Write one sample: `pixels` uint8 (t, h, w, 3) (t = 1 for images), `styles` [-1, 1] (n_ref, s, s, 3).

        Returns the written paths.
        """
        if self.mode == "video":
            write_mp4(self.sample_path(job), pixels, self.fps, self.codec)
            if self.gif:
                write_gif(self.gif_path(job), pixels, self.fps)
            for i, frame in enumerate(pixels if self.png_frames else []):
                write_image(self.frame_path(job, i), frame)
        else:
            write_image(self.sample_path(job), pixels[0])
        write_text(self.prompt_path(job), job.request.prompt)
        for path, style in zip(self.style_paths(job), styles):
            write_image(path, style_to_uint8(style))
        return self.paths(job, pixels.shape[0])
