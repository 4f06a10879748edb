"""Evaluation outputs: metric means, per-style and per-prompt tables (CSV, markdown), metrics.json, contact sheets."""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Sequence

import numpy as np
from PIL import Image

from stylecrafter_jax.evaluation.preprocess import center_crop
from stylecrafter_jax.evaluation.samples import read_rgb
from stylecrafter_jax.evaluation.scoring import METRICS, FolderScores

_GAP = 4


def summarize(rows: Sequence[dict]) -> dict[str, float | None]:
    """Mean of each metric over the rows that have it (None where no row has it, e.g. temporal ones on images)."""
    means: dict[str, float | None] = {}
    for metric in METRICS:
        values = [row[metric] for row in rows if row.get(metric) is not None]
        means[metric] = float(np.mean(values, dtype=np.float64)) if values else None
    return means


def group_table(rows: Sequence[dict], key: str) -> list[dict]:
    """One row per distinct `key` value (first-seen order): the value, the sample count and the metric means."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return [{key: value, "samples": len(members), **summarize(members)} for value, members in groups.items()]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_tables(table: Sequence[dict], path_stem: str) -> None:
    """`path_stem`.csv and `path_stem`.md of a list of same-keyed rows."""
    if not table:
        return
    columns = list(table[0])
    with open(path_stem + ".csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[_cell(row[c]) for c in columns] for row in table])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]).replace("|", "\\|") for c in columns) + " |" for row in table]
    with open(path_stem + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def metrics_document(scores: FolderScores, settings: dict) -> dict:
    """The metrics.json content: counts (requested, scored, skipped, truncated), means, settings, every row."""
    return {
        "requested_samples": scores.requested,
        "scored_samples": len(scores.rows),
        "skipped_samples": len(scores.skipped),
        "complete": len(scores.rows) == scores.requested,
        "metrics": summarize(scores.rows),
        "skipped": scores.skipped,
        "truncated": scores.truncated,
        "settings": settings,
        "samples": list(scores.rows),
    }


def write_outputs(out_dir: str, scores: FolderScores, settings: dict) -> dict:
    """Write metrics.json and the per-style / per-prompt tables into `out_dir`; returns the metrics document."""
    os.makedirs(out_dir, exist_ok=True)
    document = metrics_document(scores, settings)
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, sort_keys=False)
        f.write("\n")
    write_tables(group_table(scores.rows, "style"), os.path.join(out_dir, "per_style"))
    write_tables(group_table(scores.rows, "prompt"), os.path.join(out_dir, "per_prompt"))
    return document


class ContactSheets:
    """Writes `name.png` per sample: its reference image(s), a gap, then up to `frames` evenly spaced frames."""

    def __init__(self, out_dir: str, frames: int = 8, height: int = 128):
        self.out_dir, self.frames, self.height = out_dir, frames, height
        self._references: dict[str, np.ndarray] = {}
        os.makedirs(out_dir, exist_ok=True)

    def _reference(self, path: str) -> np.ndarray:
        if path not in self._references:
            self._references[path] = center_crop(read_rgb(path), self.height)
        return self._references[path]

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        width = max(1, round(w * self.height / h))
        return np.asarray(Image.fromarray(frame).resize((width, self.height), Image.Resampling.BICUBIC))

    def write(self, style_paths: Sequence[str], name: str, video: np.ndarray) -> str:
        """Write and return the contact sheet of one sample."""
        picks = np.unique(np.linspace(0, len(video) - 1, min(self.frames, len(video))).round().astype(int))
        tiles = [self._reference(p) for p in style_paths] + [None] + [self._frame(video[i]) for i in picks]
        width = sum(_GAP if t is None else t.shape[1] for t in tiles) + _GAP * (len(tiles) - 1)
        sheet = np.full((self.height, width, 3), 255, np.uint8)
        x = 0
        for tile in tiles:
            if tile is not None:
                sheet[:, x:x + tile.shape[1]] = tile
            x += (_GAP if tile is None else tile.shape[1]) + _GAP
        path = os.path.join(self.out_dir, f"{name}.png")
        Image.fromarray(sheet).save(path)
        return path
