"""Periodic evaluation inside training: sample a small fixed subset of an eval JSON, score it, return scalars.

The training loop builds one `PeriodicTasks`: a `SamplingPipeline` and one `PeriodicEvaluator` (metric
encoders, flow, cached text and reference embeddings), which it calls when due with a sample function
closing over the current parameters (`pipeline_sample_fn`, on the pipeline whose `params` it keeps
current); the returned dict (`eval/clip_text`, ..., `eval/samples`) is logged with the training scalars.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from stylecrafter_jax.errors import ConfigError, ShapeError
from stylecrafter_jax.evaluation.defaults import evaluation_config
from stylecrafter_jax.evaluation.encoders import MetricEncoders, build_metric_encoders
from stylecrafter_jax.evaluation.flow import FlowEstimator
from stylecrafter_jax.evaluation.report import summarize
from stylecrafter_jax.evaluation.scoring import Scorer
from stylecrafter_jax.sampling.generate import generate_eval_samples, load_style_images
from stylecrafter_jax.sampling.inputs import SampleRequest, batch_jobs, expand_samples, read_eval_json
from stylecrafter_jax.sampling.pipeline import SamplingPipeline
from stylecrafter_jax.train.metrics import due
from stylecrafter_jax.train.state import merge

SampleFn = Callable[[Sequence[SampleRequest]], np.ndarray]
"""`sample_fn(requests) -> uint8 videos (len(requests), frames, h, w, 3)` (frames = 1 for images)."""


class PeriodicEvaluator:
    """Scores what `sample_fn` generates for a fixed list of requests; returns {prefix + metric: mean}."""

    def __init__(self, requests: Sequence[SampleRequest], encoders: MetricEncoders, flow: FlowEstimator,
                 frames: int, root: str, prefix: str = "eval/"):
        if not requests:
            raise ConfigError("periodic evaluation: no request to sample (empty subset)")
        self.requests, self.prefix = list(requests), prefix
        self.scorer = Scorer(encoders, flow, frames, max(r.num_refs for r in requests), root)
        for request in self.requests:
            self.scorer.embed_references(request)

    def __call__(self, sample_fn: SampleFn) -> dict[str, float]:
        """Generate every request once with `sample_fn` and return the metric means and the sample count."""
        videos = np.asarray(sample_fn(self.requests))
        expected = (len(self.requests), self.scorer.frames)
        if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[:2] != expected or videos.shape[-1] != 3:
            raise ShapeError(f"sample_fn returned {videos.dtype} {videos.shape}, expected uint8 "
                             f"({expected[0]}, {expected[1]}, h, w, 3)")
        batch = self.scorer.encoders.batch_size
        triples = [(request, 0, video) for request, video in zip(self.requests, videos)]
        rows = [row for start in range(0, len(triples), batch)
                for row in self.scorer.score(triples[start:start + batch])]
        scalars = {self.prefix + name: value for name, value in summarize(rows).items() if value is not None}
        scalars[self.prefix + "samples"] = float(len(rows))
        return scalars


def make_periodic_evaluator(config: ml_collections.ConfigDict, eval_json: str, eval_root: str,
                            num_entries: int) -> PeriodicEvaluator:
    """A PeriodicEvaluator over the first `num_entries` entries of `eval_json`, with an evaluation config's
    encoders, flow and frame count (`configs/evaluation.py`)."""
    if num_entries < 1:
        raise ConfigError(f"periodic evaluation entries: got {num_entries}, expected an integer >= 1")
    requests = read_eval_json(eval_json, eval_root)[:num_entries]
    return PeriodicEvaluator(requests, build_metric_encoders(config),
                             FlowEstimator(config.flow.method, config.flow.dis_preset), config.frames, eval_root)


def pipeline_sample_fn(pipeline: SamplingPipeline, seed: int) -> SampleFn:
    """A SampleFn drawing sample i of the subset with noise fold_in(seed, i) from `pipeline` (its current
    `params`), in batches split where the number of references changes."""
    def sample(requests: Sequence[SampleRequest]) -> np.ndarray:
        styles = load_style_images(requests)
        videos: list[np.ndarray] = [np.empty(0)] * len(requests)
        for batch in batch_jobs(expand_samples(requests), len(requests)):
            images = np.stack([np.stack([styles[p] for p in job.request.style_paths]) for job in batch])
            pixels = pipeline([job.request.prompt for job in batch], images, [job.index for job in batch], seed)
            for job, video in zip(batch, pixels):
                videos[job.index] = np.asarray(video)
        return np.stack(videos)

    return sample


class PeriodicTasks:
    """Inside training, every `train.sample_every` steps: the first `periodic.entries` entries of an official
    evaluation JSON sampled with the current weights into `WORKDIR/samples/step_NNNNNNN/` (official file
    naming); every `train.eval_every` steps: those scored, the `eval/*` scalars returned for the training log.
    Sampling splits its batches over the training mesh, with the parameters in the training state's shardings."""

    def __init__(self, config: ml_collections.ConfigDict, encoder_params: dict[str, Any], tokenizer,
                 *, primary: bool, mesh: Mesh | None = None, log: Callable[[str], None] = print):
        periodic, train = config.periodic, config.train
        if not periodic.eval_json:
            raise ConfigError("train.sample_every / train.eval_every need periodic.eval_json (an official "
                              "evaluation JSON) and periodic.eval_root")
        if config.weights_variant not in ("", "ema") or (config.weights_variant == "ema" and not train.ema_decay):
            raise ConfigError(f"weights_variant {config.weights_variant!r}: expected '' (the trained weights) or "
                              "'ema' (their EMA, which needs train.ema_decay > 0)")
        self.config, self.encoder_params, self.primary, self.log = config, encoder_params, primary, log
        self.pipeline = SamplingPipeline(config.model, config.sampling, self._params(None), tokenizer, mesh=mesh,
                                         rules=config.mesh.rules)
        self.evaluator = None
        if train.eval_every:
            evaluation = evaluation_config(periodic.evaluation)
            evaluation.clip.checkpoint, evaluation.clip.format = periodic.clip_checkpoint, periodic.clip_format
            evaluation.dino.checkpoint = periodic.dino_checkpoint
            self.evaluator = make_periodic_evaluator(evaluation, periodic.eval_json, periodic.eval_root,
                                                     periodic.entries)

    def _params(self, trained: dict | None) -> dict[str, Any]:
        if trained is None:  # placeholders until the first call; only the structure is checked
            return {"unet": {}, "adapter": {}, **self.encoder_params}
        return {"unet": trained["unet"], "adapter": trained["adapter"], **self.encoder_params}

    def __call__(self, step: int, params: dict, ema: dict | None = None) -> dict[str, float]:
        """Run what is due at `step` with `params` (with the EMA of the trained leaves in place when
        `weights_variant` is "ema"); returns the metric scalars (empty when no evaluation ran)."""
        train, periodic = self.config.train, self.config.periodic
        sample_due, eval_due = due(step, train.sample_every), due(step, train.eval_every)
        if not (sample_due or eval_due):
            return {}
        if self.config.weights_variant == "ema":
            params = merge(params, ema)
        self.pipeline.params = jax.device_put(self._params(params))
        if sample_due:
            out = os.path.join(self.config.workdir, "samples", f"step_{step:07d}") if self.primary else \
                tempfile.mkdtemp()
            generate_eval_samples(self.pipeline, periodic.eval_json, periodic.eval_root, out, seed=periodic.seed,
                                  limit=periodic.entries, overwrite=True)
            self.log(f"samples of step {step} written to {out}")
        return self.evaluator(pipeline_sample_fn(self.pipeline, periodic.seed)) if eval_due else {}
