"""The reference's key tables of the official checkpoints (copies of stylecrafter-keys/*.tsv in data/)."""

from __future__ import annotations

import ast
import csv
import os

import numpy as np

DATA = os.path.join(os.path.dirname(__file__), "data")
# The tables' transform column, in torch_layout's names.
TRANSFORMS = {"as-is": "as-is", "as-is (scale if norm)": "as-is", "dense: .T": "dense",
              "conv: transpose(2,3,1,0)": "conv", "conv1d k=1 -> dense: w[:,:,0].T": "conv1d_k1",
              "split3+T": "dense", "split into q,k,v thirds": "as-is"}


def table(name: str) -> list[dict[str, str]]:
    """The rows of `data/<name>` as dicts keyed by the header."""
    with open(os.path.join(DATA, name)) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def shape(text: str) -> tuple[int, ...]:
    """"(320, 4, 3, 3)" -> (320, 4, 3, 3)."""
    return tuple(ast.literal_eval(text))


def unet_table() -> dict[str, dict[str, str]]:
    """model.ckpt's 1196 U-Net rows by checkpoint key."""
    return {row["checkpoint_key"]: row for row in table("unet_model.ckpt_keys.tsv")}


def adapter_table() -> dict[str, dict[str, str]]:
    """adapter_v1.pth's 139 rows by key."""
    return {row["checkpoint_key"]: row for row in table("adapter_v1.pth_keys.tsv")}


def temporal_table() -> dict[str, dict[str, dict[str, str]]]:
    """temporal_v1_1.pth's rows nested as the file is: {module path: {inner key: row}}."""
    nested: dict[str, dict[str, dict[str, str]]] = {}
    for row in table("temporal_v1_1.pth_layout.tsv"):
        nested.setdefault(row["outer_key"], {})[row["inner_key"]] = row
    return nested


def random_tensors(shapes: dict[str, tuple[int, ...]], seed: int, dtype=np.float16) -> dict[str, np.ndarray]:
    """Random N(0, 1) tensors of the given shapes, rounded to `dtype` (float16 halves the file size)."""
    rng = np.random.default_rng(seed)
    return {key: rng.standard_normal(s, dtype=np.float32).astype(dtype) for key, s in shapes.items()}
