"""Run a sampling pipeline over many requests: check inputs and outputs first, then batch, sample and write.

`generate` is the loop the `sample` command and the evaluation use; `generate_eval_samples` does it for
an official evaluation JSON. Batches hold up to `batch_size` samples with the same number of style
references; a short batch is padded with copies of its last sample (discarded), so every batch has
the same shape and reuses the compiled functions. On a mesh the batch size is rounded up to a multiple
of its batch shards (`SamplingPipeline.round_batch`), so every device samples.
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple, Sequence

import numpy as np
from tqdm import tqdm

from stylecrafter_jax.conditioning.preprocess import load_style_image
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.sampling.inputs import (SampleJob, SampleRequest, batch_jobs, check_style_files,
                                              expand_samples, read_eval_json)
from stylecrafter_jax.sampling.io import SampleWriter
from stylecrafter_jax.sampling.pipeline import SamplingPipeline


class GeneratedSample(NamedTuple):
    """One written sample: its job and the files written for it (the sample file first)."""

    job: SampleJob
    paths: list[str]


BatchCallback = Callable[[Sequence[SampleJob], np.ndarray], None]
"""`on_batch(jobs, pixels)`: called after each batch with the uint8 pixels (len(jobs), t, h, w, 3)."""


def load_style_images(requests: Sequence[SampleRequest]) -> dict[str, np.ndarray]:
    """Every distinct style reference, centre-cropped to 512 in [-1, 1]; a DataError names a bad file."""
    check_style_files(requests)
    images: dict[str, np.ndarray] = {}
    for request in requests:
        for path in request.style_paths:
            if path not in images:
                images[path] = load_style_image(path)
    return images


def generate(pipeline: SamplingPipeline, jobs: Sequence[SampleJob], writer: SampleWriter, *, seed: int,
             batch_size: int = 1, overwrite: bool = False, progress: bool = False,
             on_batch: BatchCallback | None = None,
             styles: dict[str, np.ndarray] | None = None) -> list[GeneratedSample]:
    """Sample every job and write its files; nothing is sampled before all inputs and outputs are checked.

    Sample `job.index` draws its noise from fold_in(seed, job.index), whatever batch it lands in.
    `progress` shows a bar over samples, and one over steps if the pipeline reports steps. `styles`
    are the references already loaded with `load_style_images` (loaded here when None).
    """
    if writer.mode != pipeline.sampling.mode:
        raise ConfigError(f"writer mode {writer.mode!r} differs from sampling.mode {pipeline.sampling.mode!r}")
    batch_size = pipeline.round_batch(batch_size)
    batches = batch_jobs(jobs, batch_size)
    writer.check_free(jobs, pipeline.sampling.frames, overwrite)
    if styles is None:
        styles = load_style_images([job.request for job in jobs])
    written: list[GeneratedSample] = []
    samples_bar = tqdm(total=len(jobs), desc="samples", unit="sample", disable=not progress, position=0)
    steps_bar = tqdm(total=pipeline.num_steps, desc="steps", unit="step", position=1, leave=False,
                     disable=not (progress and pipeline.report_steps))
    previous_on_step = pipeline.on_step
    pipeline.on_step = lambda step: steps_bar.update(1)
    try:
        for batch in batches:
            steps_bar.reset()
            padded = list(batch) + [batch[-1]] * (batch_size - len(batch))
            style_images = np.stack([np.stack([styles[p] for p in job.request.style_paths]) for job in padded])
            pixels = pipeline([job.request.prompt for job in padded], style_images,
                              [job.index for job in padded], seed)[:len(batch)]
            for job, sample, references in zip(batch, pixels, style_images):
                written.append(GeneratedSample(job, writer.write(job, sample, references)))
            if on_batch is not None:
                on_batch(batch, pixels)
            samples_bar.update(len(batch))
    finally:
        pipeline.on_step = previous_on_step
        steps_bar.close()
        samples_bar.close()
    return written


def generate_eval_samples(pipeline: SamplingPipeline, eval_json: str | os.PathLike, eval_root: str | os.PathLike,
                          out_dir: str | os.PathLike, *, seed: int | None = None, batch_size: int = 1,
                          samples_per_prompt: int = 1, limit: int | None = None, overwrite: bool = False,
                          gif: bool = False, png_frames: bool = False, image_format: str = "jpg",
                          progress: bool = False, on_batch: BatchCallback | None = None) -> list[GeneratedSample]:
    """Generate the entries of an official evaluation JSON (the first `limit` if given) into `out_dir`.

    Files carry the official names (`samples/%04d_%d.mp4|jpg`, `prompts/…`, `style/…`); `seed` defaults
    to `sampling.seed`; the mode, size, steps and guidance are the pipeline's sampling settings.
    """
    requests = read_eval_json(eval_json, eval_root)
    if limit is not None:
        requests = requests[:limit]
    sampling = pipeline.sampling
    writer = SampleWriter(os.fspath(out_dir), sampling.mode, fps=sampling.fps, gif=gif, png_frames=png_frames,
                          image_format=image_format)
    return generate(pipeline, expand_samples(requests, samples_per_prompt), writer,
                    seed=sampling.seed if seed is None else seed, batch_size=batch_size, overwrite=overwrite,
                    progress=progress, on_batch=on_batch)
