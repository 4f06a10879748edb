"""Periodic samples and metrics inside training, with the sampling pipeline and the evaluation metrics.

Every `train.sample_every` steps the first `periodic.entries` entries of an official evaluation JSON are
sampled with the current weights into `WORKDIR/samples/step_NNNNNNN/` (official file naming); every
`train.eval_every` steps they are scored (CLIP-Text, CLIP-Style, DINO-Style, CLIP-Temp, warping error)
and the `eval/*` scalars are returned for the training log. Sampling splits its batches over the
training mesh, with the parameters in the training state's shardings.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import jax
import ml_collections
from jax.sharding import Mesh

from stylecrafter_jax.evaluation.defaults import evaluation_config
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.evaluation.periodic import make_periodic_evaluator, pipeline_sample_fn
from stylecrafter_jax.sampling.generate import generate_eval_samples
from stylecrafter_jax.sampling.pipeline import SamplingPipeline
from stylecrafter_jax.train.state import merge


class PeriodicTasks:
    """Samples and scores the configured evaluation subset with the current weights, when due."""

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
        sample_due = train.sample_every and step % train.sample_every == 0
        eval_due = self.evaluator is not None and step % train.eval_every == 0
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
