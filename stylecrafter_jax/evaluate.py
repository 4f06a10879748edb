"""Score stylized samples with the paper's metrics: `python -m stylecrafter_jax.evaluate --config=CONFIG ...`.

    python -m stylecrafter_jax.evaluate --config=configs/evaluation.py:video \
        --eval-json eval_data/eval_video_gen_single_ref_full.json --eval-root eval_data \
        --samples RUN_DIR --out runs/eval [--limit N] \
        --config.clip.checkpoint=CLIP_DIR --config.dino.checkpoint=DINO_DIR

--samples: a run folder of the official StyleCrafter inference script or of `python -m stylecrafter_jax.sample`
(`samples/EEEE_S.mp4|jpg`, `prompts/…`; PNG frame folders and images are read too). --checkpoint DIR
(converted weights) instead generates every entry first into --out/generated, with the config's `model`
and `sampling` sections (every style file must exist then). Writes into --out:
metrics.json (requested / scored / skipped counts with reasons, the means, every sample's scores and
the settings), per_style.{csv,md}, per_prompt.{csv,md}, contact_sheets/EEEE_S.png. Exit status 2 on
bad input (nothing scored, a missing file under `on_missing=error`, a JSON that does not match the
folder). Metric definitions: `stylecrafter_jax/evaluation/metrics.py`; choices: `configs/evaluation.py`.

Generation splits every batch over the config's `mesh` (every device) and the processes of a
multi-process run (`mesh.distributed`): every process runs the same command and scores the samples it
received; process 0 writes into --out, the others into a temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from stylecrafter_jax.cli import flag_main
from stylecrafter_jax.conditioning.tokenizer import load_tokenizer
from stylecrafter_jax.errors import ConfigError, DataError
from stylecrafter_jax.evaluation.encoders import build_metric_encoders
from stylecrafter_jax.evaluation.flow import FlowEstimator
from stylecrafter_jax.evaluation.metrics import OCCLUSION_ALPHA, OCCLUSION_BETA
from stylecrafter_jax.evaluation.report import ContactSheets, write_outputs
from stylecrafter_jax.evaluation.scoring import METRICS, FolderScores, Scorer, score_folder
from stylecrafter_jax.parallel.distributed import is_primary, maybe_initialize
from stylecrafter_jax.parallel.mesh import create_mesh, describe_mesh
from stylecrafter_jax.sampling.generate import generate_eval_samples
from stylecrafter_jax.sampling.inputs import SampleRequest, read_eval_json
from stylecrafter_jax.sampling.pipeline import SamplingPipeline
from stylecrafter_jax.sampling.settings import check_sampling
from stylecrafter_jax.sampling.weights import resolve_params

SKIPS_SHOWN = 5
EVALUATION_SECTIONS = ("mode", "frames", "on_missing", "clip", "dino", "flow")
GENERATED_SUBDIR = "generated"


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """Register the command's flags on `flag_values` (config overrides are read from `argv`)."""
    config_flags.DEFINE_config_file("config", None, "Evaluation config, e.g. configs/evaluation.py:video",
                                    flag_values=flag_values, sys_argv=list(argv))
    fv = dict(flag_values=flag_values)
    flags.DEFINE_string("eval-json", None, "Official evaluation JSON: a list of {prompt, style_path}.", **fv)
    flags.DEFINE_string("eval-root", None, "Folder the JSON's style paths are relative to.", **fv)
    flags.DEFINE_string("out", None, "Output folder for metrics.json, tables and contact sheets.", **fv)
    flags.DEFINE_string("samples", None, "Run folder holding the samples to score.", **fv)
    flags.DEFINE_string("checkpoint", None, "Converted weights: generate the samples into OUT/generated first.",
                        **fv)
    flags.DEFINE_integer("limit", None, "Only the first N entries of the JSON (default: config.limit).", **fv)
    flags.DEFINE_bool("overwrite", False, "With --checkpoint: replace samples already in OUT/generated.", **fv)


def settings(config: ml_collections.ConfigDict, fv: flags.FlagValues, run_dir: str) -> dict:
    """What the numbers depend on, recorded in metrics.json (with the sampling settings when generated here)."""
    generation = None if fv.checkpoint is None else {
        "checkpoint": os.path.abspath(fv.checkpoint), "model_size": config.model.size,
        "sampling": config.sampling.to_dict()}
    return {
        "eval_json": os.path.abspath(fv["eval-json"].value), "eval_root": os.path.abspath(fv["eval-root"].value),
        "samples": os.path.abspath(run_dir), "mode": config.mode, "frames": config.frames,
        "samples_per_entry": config.samples_per_entry, "on_missing": config.on_missing,
        "clip": {"size": config.clip.size, "checkpoint": config.clip.checkpoint, "format": config.clip.format,
                 "model": "OpenCLIP ViT-H/14 laion2b_s32b_b79k" if config.clip.size == "full" else "tiny (tests)"},
        "dino": {"checkpoint": config.dino.checkpoint, "model": config.dino.model.to_dict(),
                 "features": "CLS token of last_hidden_state (after the final layernorm)"},
        "preprocessing": "bicubic short-side resize to the encoder size, centre crop; CLIP mean/std for CLIP, "
                         "ImageNet mean/std for DINO",
        "flow": {"library": "opencv", **config.flow.to_dict()},
        "occlusion": {"alpha": OCCLUSION_ALPHA, "beta": OCCLUSION_BETA, "check": "forward-backward"},
        "generation": generation,
    }


def _limit(fv: flags.FlagValues, config: ml_collections.ConfigDict) -> int:
    limit = config.limit if fv.limit is None else fv.limit
    if limit < 0:
        raise ConfigError(f"--limit: got {limit}, expected an integer >= 0 (0: every entry)")
    return limit


def _requests(fv: flags.FlagValues, config: ml_collections.ConfigDict) -> list[SampleRequest]:
    if fv["eval-json"].value is None or fv["eval-root"].value is None:
        raise ConfigError("--eval-json and --eval-root are required")
    if (fv.samples is None) == (fv.checkpoint is None):
        raise ConfigError("give exactly one of --samples (score a run folder) or --checkpoint (generate, then score)")
    if fv.samples is not None and not os.path.isdir(fv.samples):
        raise DataError(f"--samples {fv.samples!r} is not a directory")
    requests = read_eval_json(fv["eval-json"].value, fv["eval-root"].value)
    limit = _limit(fv, config)
    return requests[:limit] if limit else requests


def generate(fv: flags.FlagValues, config: ml_collections.ConfigDict, out: str) -> str:
    """Generate the JSON's entries with the weights of --checkpoint into `out`/generated; returns that folder."""
    sampling = config.sampling
    if (sampling.mode, sampling.frames) != (config.mode, config.frames):
        raise ConfigError(f"sampling makes {sampling.mode} samples of {sampling.frames} frame(s) but the evaluation "
                          f"expects {config.mode} samples of {config.frames}: set config.frames / config.mode to match")
    check_sampling(sampling, config.model)
    mesh = create_mesh(config.mesh)
    params, source = resolve_params(config, fv.checkpoint)
    print(f"{source}; sampling on {describe_mesh(mesh)}", flush=True)
    pipeline = SamplingPipeline(config.model, sampling, params, load_tokenizer(config.clip.tokenizer or None),
                                mesh=mesh, rules=config.mesh.rules)
    run_dir = os.path.join(out, GENERATED_SUBDIR)
    written = generate_eval_samples(pipeline, fv["eval-json"].value, fv["eval-root"].value, run_dir,
                                    batch_size=config.generation_batch_size,
                                    samples_per_prompt=config.samples_per_entry, limit=_limit(fv, config) or None,
                                    overwrite=fv.overwrite)
    print(f"generated {len(written)} samples into {run_dir} ({pipeline.num_steps} steps)", flush=True)
    return run_dir


def report_lines(scores: FolderScores, metrics: dict) -> list[str]:
    """The console summary: counts, skip reasons (first few) and the means."""
    lines = [f"scored {len(scores.rows)} of {scores.requested} requested samples"
             + (f"; {len(scores.skipped)} skipped" if scores.skipped else "")
             + (f"; {len(scores.truncated)} cut to the expected frame count" if scores.truncated else "")]
    lines += [f"  skipped {s['name']}: {s['reason']}" for s in scores.skipped[:SKIPS_SHOWN]]
    if len(scores.skipped) > SKIPS_SHOWN:
        lines.append(f"  ... and {len(scores.skipped) - SKIPS_SHOWN} more (metrics.json lists all)")
    lines += [f"{name:>12s}: {'n/a' if metrics[name] is None else f'{metrics[name]:.4f}'}" for name in METRICS]
    return lines


def run(fv: flags.FlagValues) -> dict:
    """Score (or generate and score) the samples the parsed flags name; returns the metrics.json document."""
    config = fv.config
    if config is None:
        raise ConfigError("--config is required, e.g. --config=configs/evaluation.py:video")
    missing = [key for key in EVALUATION_SECTIONS if key not in config]
    if missing:
        raise ConfigError(f"--config is not an evaluation config (it has no {', '.join(missing)}): use "
                          "configs/evaluation.py:video or configs/evaluation.py:image")
    if fv.out is None:
        raise ConfigError("--out is required: the folder for metrics.json, the tables and the contact sheets")
    if config.on_missing not in ("skip", "error"):
        raise ConfigError(f"config.on_missing: got {config.on_missing!r}, expected 'skip' or 'error'")
    requests = _requests(fv, config)
    if fv.checkpoint is not None:
        maybe_initialize(config.mesh.distributed)
    with tempfile.TemporaryDirectory() as scratch:
        return _evaluate(fv, config, requests, fv.out if is_primary() else scratch)


def _evaluate(fv: flags.FlagValues, config: ml_collections.ConfigDict, requests: Sequence[SampleRequest],
              out: str) -> dict:
    """Generate (with --checkpoint) and score into `out`; returns the metrics.json document."""
    encoders = build_metric_encoders(config)
    run_dir = fv.samples if fv.checkpoint is None else generate(fv, config, out)
    flow = FlowEstimator(config.flow.method, config.flow.dis_preset)
    scorer = Scorer(encoders, flow, config.frames, max(r.num_refs for r in requests), fv["eval-root"].value)
    sheets = ContactSheets(os.path.join(out, "contact_sheets"), config.contact_sheet.frames,
                           config.contact_sheet.height)
    scores = score_folder(requests, run_dir, scorer, samples_per_entry=config.samples_per_entry,
                          on_missing=config.on_missing,
                          on_sample=lambda request, name, video: sheets.write(request.style_paths, name, video))
    document = write_outputs(out, scores, settings(config, fv, run_dir))
    print("\n".join(report_lines(scores, document["metrics"])))
    if not scores.rows:
        raise DataError(f"no sample could be scored out of {scores.requested} requested (reasons in "
                        f"{os.path.join(out, 'metrics.json')})")
    return document


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv (argv[0] is the program name; sys.argv when None), run, and return the exit status (2 on bad input)."""
    return flag_main(argv, __doc__, define_flags, run)


if __name__ == "__main__":
    sys.exit(main())
