"""The `data` config: sources, kind, crops, clip sampling, caption rules, batches, seed, workers, build options.

`data_config(size, source)` is stage-neutral: videos only (`kind`), images at the video frame size; a
stage's config file sets its own kind ("images", or "mixed": videos mixed with images at `image_ratio`),
batches and crops. size "full" or "tiny" (small crops for tests and the toy); source "tfds" (built
datasets, set the data_dir keys) or "synthetic".
Build a source first: python -m stylecrafter_jax.data.build --kind images --source DIR --out DATA_DIR.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from stylecrafter_jax.data.build.options import BuildOptions
from stylecrafter_jax.data.captions import FIXED_RULES
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.paths import DEFAULT_LOCAL_CACHE

def _images(tiny: bool, source: str) -> ml_collections.ConfigDict:
    """Image source and augmentation: target centre crop `size`; style ref: short side -> style_resize, random
    style_crop square, resized to style_output squared (0 keeps the crop: the trainer then feeds it through
    conditioning.preprocess.clip_pixels, the kornia 224 resize of the inference path)."""
    images = ml_collections.ConfigDict(dict(
        source=source, data_dir="", name="style_images", split="train",
        batch_size=128,  # global
        size=(320, 512),  # the video frames' size
        style_resize=800, style_crop=512, style_output=0,
        synthetic=dict(num_records=1024, size=(600, 800)),
    ))
    if tiny:
        images.update(batch_size=8, size=(64, 64), style_resize=100, style_crop=64,
                      synthetic=dict(num_records=64, size=(80, 100)))
    return images


def _videos(tiny: bool, source: str) -> ml_collections.ConfigDict:
    """Video source and clip sampling (WebVid loader: stride uniform in stride_range, 320x512 centre crop);
    the style ref is a crop of one clip frame at the same relative scale as for images (800/512)."""
    videos = ml_collections.ConfigDict(dict(
        source=source, data_dir="", name="videos", split="train",
        batch_size=8, num_frames=16, stride_range=(1, 6), size=(320, 512),
        style_frame="random", style_resize=500, style_crop=320, style_output=0, fps_max=0.0,
        synthetic=dict(num_records=256, num_frames=48, size=(320, 568), fps=24.0),
    ))
    if tiny:
        videos.update(batch_size=2, num_frames=4, stride_range=(1, 2), size=(64, 64), style_resize=100,
                      style_crop=64, synthetic=dict(num_records=16, num_frames=12, size=(64, 90),
                                                                     fps=24.0))
    return videos


def data_config(size: str = "full", source: str = "tfds") -> ml_collections.ConfigDict:
    """The stage-neutral data config at a size (see the module docstring)."""
    if size not in ("full", "tiny") or source not in ("tfds", "synthetic"):
        raise ConfigError(f"data_config({size!r}, {source!r}); expected size in ('full', 'tiny'), source in "
                          "('tfds', 'synthetic')")
    tiny = size == "tiny"
    data = ml_collections.ConfigDict()
    data.kind = "videos"  # "images" | "videos" | "mixed" (data.iterators.KINDS)
    data.seed = 0
    data.shuffle = True
    data.dtype = "uint8"  # pixels: "uint8" [0, 255] or "float32" [-1, 1]
    data.image_ratio = 0.2  # kind "mixed": probability that a step is an image batch
    data.worker_count = 0 if tiny else 8  # grain decoding processes per host (0: in the training process)
    data.worker_buffer_size = 2
    data.read_threads = 8
    data.prefetch = 16
    data.local_cache = DEFAULT_LOCAL_CACHE  # datasets in a bucket are copied here first (ArrayRecord reads local files)
    data.images = _images(tiny, source)
    data.videos = _videos(tiny, source)
    data.captions = ml_collections.ConfigDict(dict(rules=FIXED_RULES, tidy=True))  # see data/captions.py
    data.cached = ml_collections.ConfigDict(dict(data_dir="", name="cached_examples", batch_size=data.images.batch_size))
    build = BuildOptions()
    if tiny:
        build = dataclasses.replace(build, image_min_side=64, image_max_side=100, video_min_side=64, video_max_side=64,
                                    video_min_frames=4)
    data.build = ml_collections.ConfigDict(dataclasses.asdict(build))  # BuildOptions(**data.build)
    return data
