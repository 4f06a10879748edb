"""Export of a finished run in the converted-checkpoint format that `sample` and `evaluate` load."""

from __future__ import annotations

import json
from typing import Any

import jax
import ml_collections
from etils import epath

from stylecrafter_jax.checkpoints.components import trained_tree_to_components
from stylecrafter_jax.checkpoints.pretrained import (MANIFEST, read_manifest, save_component, variant_directory,
                                                     write_manifest)
from stylecrafter_jax.parallel.distributed import is_primary
from stylecrafter_jax.train.state import TrainState, merge

EMA = "ema"


def exported_step(directory: str) -> int | None:
    """The step of the run exported to `directory`, or None when there is no export."""
    if not epath.Path(directory, MANIFEST).is_file():
        return None
    return int(read_manifest(directory).get("step", -1))


def export_run(config: ml_collections.ConfigDict, state: TrainState, encoder_params: dict[str, Any],
               directory: str) -> None:
    """Write every component (U-Net, adapter, the frozen encoders) of the run's final weights to `directory`,
    replacing an earlier export of the run (one that trained fewer steps); with an EMA, also the variant
    "ema": the components holding trained leaves, with the EMA in their place.

    Every process calls it: orbax saves are collective, each process writing its shards; process 0
    writes the manifest.
    """
    components = {**trained_tree_to_components(state.params), **encoder_params}
    manifest = {"source": "training", "stage": config.stage, "step": int(jax.device_get(state.step)),
                "model_config": json.loads(config.model.to_json_best_effort())}
    summary = {name: save_component(directory, name, params, overwrite=True) for name, params in components.items()}
    if state.ema is not None:
        averaged = trained_tree_to_components(merge(state.params, state.ema))
        trained = trained_tree_to_components({"unet": {}, "adapter": {}, **state.ema})
        names = [name for name in averaged if jax.tree.leaves(trained[name])]
        variant = variant_directory(directory, EMA)
        manifest["variants"] = {EMA: {name: save_component(variant, name, averaged[name], overwrite=True)
                                      for name in names}}
        manifest["ema_decay"] = config.train.ema_decay
    if is_primary():
        write_manifest(directory, manifest, summary, overwrite=True)
