"""Score samples against their prompts and style references: one row of metrics per sample, skips counted.

`Scorer` embeds in batches (caching the text and reference embeddings, which many samples share) and
computes the metrics with the jitted functions of `metrics.py`; `score_folder` reads a run folder with
the official file names and says, for every requested sample that it does not score, why.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import numpy as np

from stylecrafter_jax.errors import DataError
from stylecrafter_jax.evaluation.encoders import MetricEncoders
from stylecrafter_jax.evaluation.flow import FlowEstimator
from stylecrafter_jax.evaluation.metrics import embedding_scores, warp_errors
from stylecrafter_jax.evaluation.samples import find_sample, read_rgb, read_sample, sample_name, saved_prompt
from stylecrafter_jax.sampling.inputs import SampleRequest

METRICS = ("clip_text", "clip_style", "dino_style", "clip_temp", "warp_error")
ScoredSample = tuple[SampleRequest, int, np.ndarray]
"""(request, sample number, uint8 frames (t, h, w, 3))."""


def style_key(request: SampleRequest, root: str) -> str:
    """The style's name in tables: its path relative to `root`; for several references their common folder."""
    paths = [os.path.relpath(p, root) for p in request.style_paths]
    if len(paths) == 1:
        return paths[0]
    folders = {os.path.dirname(p) for p in paths}
    return folders.pop() if len(folders) == 1 and "" not in folders else " + ".join(paths)


class Scorer:
    """Metrics of (request, sample, frames) triples; every video must have exactly `frames` frames."""

    def __init__(self, encoders: MetricEncoders, flow: FlowEstimator, frames: int, max_refs: int, root: str):
        self.encoders, self.flow, self.frames, self.max_refs, self.root = encoders, flow, frames, max_refs, root
        self._texts: dict[str, np.ndarray] = {}
        self._refs: dict[str, dict[str, np.ndarray]] = {}

    def embed_references(self, request: SampleRequest) -> None:
        """Embed (once) the request's reference images; DataError if one is missing or unreadable."""
        new = [p for p in dict.fromkeys(request.style_paths) if p not in self._refs]
        if not new:
            return
        for path in new:
            if not os.path.isfile(path):
                raise DataError(f"style image {path!r} (entry {request.entry}) does not exist")
        embeds = self.encoders.embed_images([read_rgb(p) for p in new])
        for i, path in enumerate(new):
            self._refs[path] = {kind: embeds[kind][i] for kind in ("clip", "dino")}

    def _embed_texts(self, prompts: Sequence[str]) -> None:
        new = [p for p in dict.fromkeys(prompts) if p not in self._texts]
        if new:
            self._texts.update(zip(new, self.encoders.embed_texts(new)))

    def score(self, batch: Sequence[ScoredSample]) -> list[dict]:
        """One row per sample: names, counts and the five metrics (temporal ones None for single frames)."""
        if len(batch) > self.encoders.batch_size:
            raise ValueError(f"score: {len(batch)} samples, more than the batch size {self.encoders.batch_size}")
        for request, sample, video in batch:
            if video.shape[0] != self.frames:
                raise DataError(f"sample {sample_name(request.entry, sample)}: {video.shape[0]} frames, "
                                f"expected {self.frames}")
            self.embed_references(request)
        self._embed_texts([request.prompt for request, _, _ in batch])
        frames = self.encoders.embed_images([frame for _, _, video in batch for frame in video])
        size, pad = self.encoders.batch_size, self.encoders.batch_size - len(batch)

        def padded(array: np.ndarray) -> np.ndarray:
            return np.concatenate([array, np.zeros((pad,) + array.shape[1:], array.dtype)])

        refs = {kind: np.zeros((size, self.max_refs, frames[kind].shape[-1]), np.float32) for kind in frames}
        mask = np.zeros((size, self.max_refs), bool)
        for i, (request, _, _) in enumerate(batch):
            for j, path in enumerate(request.style_paths):
                mask[i, j] = True
                for kind in frames:
                    refs[kind][i, j] = self._refs[path][kind]
        scores = embedding_scores(
            padded(frames["clip"].reshape(len(batch), self.frames, -1)),
            padded(np.stack([self._texts[request.prompt] for request, _, _ in batch])),
            refs["clip"], padded(frames["dino"].reshape(len(batch), self.frames, -1)), refs["dino"], mask)
        scores = {k: np.asarray(v)[:len(batch)] for k, v in scores.items()}
        rows = []
        for i, (request, sample, video) in enumerate(batch):
            warp, valid = self._warp(video)
            rows.append({
                "name": sample_name(request.entry, sample), "entry": request.entry, "sample": sample,
                "prompt": request.prompt, "style": style_key(request, self.root), "refs": request.num_refs,
                "frames": int(video.shape[0]),
                "clip_text": float(scores["clip_text"][i]), "clip_style": float(scores["clip_style"][i]),
                "dino_style": float(scores["dino_style"][i]),
                "clip_temp": None if self.frames < 2 else float(scores["clip_temp"][i]),
                "warp_error": warp, "warp_valid_fraction": valid,
            })
        return rows

    def _warp(self, video: np.ndarray) -> tuple[float | None, float | None]:
        """(warping error, mean valid-pixel fraction) of one video, (None, None) for a single frame."""
        if video.shape[0] < 2:
            return None, None
        forward, backward = self.flow.video_flows(video)
        error, valid = warp_errors(video[None].astype(np.float32) / np.float32(255.0), forward[None], backward[None])
        return float(error[0]), float(valid[0])


@dataclasses.dataclass
class FolderScores:
    """Rows of the scored samples and the bookkeeping of what was requested and what was not scored."""

    rows: list[dict]
    requested: int
    skipped: list[dict]
    truncated: list[str]


def score_folder(requests: Sequence[SampleRequest], run_dir: str, scorer: Scorer, *, samples_per_entry: int = 1,
                 on_missing: str = "skip",
                 on_sample: Callable[[SampleRequest, str, np.ndarray], None] | None = None) -> FolderScores:
    """Score samples `EEEE_S` (S < samples_per_entry) of every request found in `run_dir`.

    Not scored, and listed with the reason (or raised as DataError when `on_missing` is "error"): a
    missing or unreadable style image, a missing or unreadable sample, fewer frames than `scorer.frames`.
    Videos with more frames are cut to the first `scorer.frames` (listed in `truncated`). A saved
    prompt (`prompts/EEEE_S.txt`) that differs from the JSON's is always an error: the folder does not
    belong to this JSON (or not in its order). `on_sample(request, name, frames)` sees every scored video.
    """
    rows: list[dict] = []
    skipped: list[dict] = []
    truncated: list[str] = []
    pending: list[ScoredSample] = []

    def skip(name: str, reason: str) -> None:
        if on_missing == "error":
            raise DataError(f"sample {name}: {reason}")
        skipped.append({"name": name, "reason": reason})

    for request in requests:
        try:
            scorer.embed_references(request)
            style_problem = None
        except DataError as e:
            style_problem = str(e)
        for sample in range(samples_per_entry):
            name = sample_name(request.entry, sample)
            if style_problem:
                skip(name, style_problem)
                continue
            saved = saved_prompt(run_dir, name)
            if saved is not None and saved.strip() != request.prompt.strip():
                raise DataError(f"sample {name}: the run saved prompt {saved.strip()!r}, the eval JSON has "
                                f"{request.prompt.strip()!r} for entry {request.entry}: the samples folder does "
                                "not match this JSON")
            path = find_sample(run_dir, name)
            if path is None:
                skip(name, f"no sample file {name}.* in {run_dir!r}")
                continue
            try:
                video = read_sample(path)
            except DataError as e:
                skip(name, str(e))
                continue
            if video.shape[0] < scorer.frames:
                skip(name, f"{path!r} has {video.shape[0]} frame(s), expected {scorer.frames}")
                continue
            if video.shape[0] > scorer.frames:
                truncated.append(name)
                video = video[:scorer.frames]
            if on_sample is not None:
                on_sample(request, name, video)
            pending.append((request, sample, video))
            if len(pending) == scorer.encoders.batch_size:
                rows += scorer.score(pending)
                pending = []
    if pending:
        rows += scorer.score(pending)
    return FolderScores(rows, len(requests) * samples_per_entry, skipped, truncated)
