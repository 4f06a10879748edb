"""The toy pipeline: base model ("full"), then the adapter ("stage1") on it, then samples and scores."""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from PIL import Image

from stylecrafter_jax.conditioning.tokenizer import load_tokenizer
from stylecrafter_jax.sampling.pipeline import SamplingPipeline
from stylecrafter_jax.sampling.weights import load_params
from stylecrafter_jax.toy.data import toy_example
from stylecrafter_jax.toy.scores import ToyScorer
from stylecrafter_jax.train.loop import run
from stylecrafter_jax.train.state import copy_text_kv_to_style_kv


def phase_config(config: ml_collections.ConfigDict, phase: str) -> ml_collections.ConfigDict:
    """The run config of a toy phase: "base" (stage full, runs/toy/base) or "adapter" (stage1 on the base)."""
    settings = config.toy[phase]
    out = config.copy_and_resolve_references()
    with out.unlocked():
        if phase == "base":
            out.stage = "full"
            out.workdir = os.path.join(config.workdir, "base")
        else:
            out.stage = "stage1"
            out.pretrained = os.path.join(config.workdir, "base", "export")
            out.pretrained_components = "unet,text_encoder,image_encoder"  # the adapter starts from scratch
        out.train.steps = settings.steps
        for key, value in settings.items():
            if key != "steps":
                out.train[key] = value
        del out["toy"]
    return out


def run_toy(config: ml_collections.ConfigDict, *, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train both phases (resuming each from its checkpoints), then sample and score; returns the scores."""
    for phase in ("base", "adapter"):
        log(f"toy: {phase} phase")
        if run(phase_config(config, phase), log=log).preempted:
            log("toy: preempted; run the same command again to resume")
            return {}
    scores = score_toy(config, log=log)
    with open(os.path.join(config.workdir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": int(config.toy.adapter.steps), **scores}) + "\n")
    log("toy scores: " + " ".join(f"{k}={v:.3f}" for k, v in scores.items()))
    return scores


def evaluation_set(config: ml_collections.ConfigDict) -> list[Any]:
    """Held-out toy examples (another seed): prompts, references and their labels."""
    toy = config.data.toy
    return [toy_example(config.toy.eval.seed, i, toy.image_size, toy.style_size, toy.num_styles)
            for i in range(config.toy.eval.samples)]


def sample_images(config: ml_collections.ConfigDict, params: dict, examples: list[Any]) -> np.ndarray:
    """uint8 (n, h, w, 3) samples of the examples' captions and style references."""
    pipeline = SamplingPipeline(config.model, config.sampling, params,
                                load_tokenizer(context_length=config.model.text_encoder.context_length))
    out = []
    size = config.toy.eval.batch_size
    for start in range(0, len(examples), size):
        batch = examples[start:start + size]
        styles = np.stack([e.style for e in batch])[:, None].astype(np.float32) / 127.5 - 1.0
        frames = pipeline([e.caption for e in batch], styles, list(range(start, start + len(batch))),
                          config.sampling.seed)
        out.append(frames[:, 0])
    return np.concatenate(out)


def score_toy(config: ml_collections.ConfigDict, *, log: Callable[[str], None] = print) -> dict[str, float]:
    """Style and content accuracy of samples with the trained adapter and with the adapter at initialisation."""
    examples = evaluation_set(config)
    scorer = ToyScorer.fit(config.data.seed, config.data.toy.image_size, config.data.toy.num_styles)
    styles, shapes = [e.style_id for e in examples], [e.shape_id for e in examples]
    trained = load_params(os.path.join(config.workdir, "export"), config.model)
    initial = load_params(os.path.join(config.workdir, "base", "export"), config.model)
    initial["unet"] = jax.jit(copy_text_kv_to_style_kv)(initial["unet"])  # the stage-1 initialisation
    scores = {}
    for name, params in (("init_", initial), ("", trained)):
        images = sample_images(config, params, examples)
        result = scorer.score(list(images), styles, shapes)
        scores.update({f"toy/{name}{k}": v for k, v in result.items()})
        write_grid(os.path.join(config.workdir, "samples", f"{name or 'trained'}.png"), examples, images)
    return scores


def write_grid(path: str, examples: list[Any], images: np.ndarray, columns: int = 8, scale: int = 4) -> None:
    """A PNG of (reference, sample) pairs, `columns` pairs per row, upscaled for viewing."""
    size = images.shape[1]
    pairs = [np.concatenate([np.asarray(Image.fromarray(e.style).resize((size, size))), img], axis=1)
             for e, img in zip(examples, images)]
    pairs += [np.zeros_like(pairs[0])] * (-len(pairs) % columns)
    rows = [np.concatenate(pairs[i:i + columns], axis=1) for i in range(0, len(pairs), columns)]
    grid = np.concatenate(rows, axis=0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)
