"""Export of a finished run in the converted-checkpoint format that `sample` and `evaluate` load."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections

from stylecrafter_jax.checkpoints.components import trained_tree_to_components
from stylecrafter_jax.checkpoints.pretrained import MANIFEST, read_manifest, save_component, write_manifest
from stylecrafter_jax.parallel.distributed import is_primary
from stylecrafter_jax.train.state import TrainState


def exported_step(directory: str) -> int | None:
    """The step of the run exported to `directory`, or None when there is no export."""
    if not os.path.isfile(os.path.join(directory, MANIFEST)):
        return None
    return int(read_manifest(directory).get("step", -1))


def export_run(config: ml_collections.ConfigDict, state: TrainState, encoder_params: dict[str, Any],
               directory: str) -> None:
    """Write every component (U-Net, adapter, the frozen encoders) of the run's final weights to `directory`,
    replacing an earlier export of the run (one that trained fewer steps).

    Every process calls it: orbax saves are collective, each process writing its shards; process 0
    writes the manifest.
    """
    components = {**trained_tree_to_components(state.params), **encoder_params}
    manifest = {"source": "training", "stage": config.stage, "step": int(jax.device_get(state.step)),
                "model_config": json.loads(config.model.to_json_best_effort())}
    summary = {name: save_component(directory, name, params, overwrite=True) for name, params in components.items()}
    if is_primary():
        write_manifest(directory, manifest, summary, overwrite=True)
