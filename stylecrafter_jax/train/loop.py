"""The training run, one linear function in sections: mesh and work directory, data, models and state,
restore, compile, loop, export; with the work directory's records of a run and the export of a finished one."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import os
import signal
import threading
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
from etils import epath
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from stylecrafter_jax import paths
from stylecrafter_jax.cache.read import TARGET_KEYS, cached_arrays, inputs_from_cache
from stylecrafter_jax.checkpoints.components import trained_tree_to_components
from stylecrafter_jax.checkpoints.pretrained import (MANIFEST, read_manifest, save_component, variant_directory,
                                                     write_manifest)
from stylecrafter_jax.checkpoints.run_checkpoints import RunCheckpointer
from stylecrafter_jax.conditioning.encoders import encode_text_context
from stylecrafter_jax.conditioning.frozen import Encoders, build_encoders, encode_batch
from stylecrafter_jax.conditioning.tokenizer import load_tokenizer
from stylecrafter_jax.data.iterators import make_iterator
from stylecrafter_jax.data.mixing import MixedIterator
from stylecrafter_jax.diffusion.schedule import schedule_from_config
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.evaluation.periodic import PeriodicTasks
from stylecrafter_jax.models.build import build_adapter, build_unet
from stylecrafter_jax.parallel.arrays import (abstract_arrays, batch_sharding, check_global_batch_size,
                                              make_global_batch, process_data_shard)
from stylecrafter_jax.parallel.distributed import StopAgreement, is_primary, maybe_initialize
from stylecrafter_jax.parallel.init import activation_rules
from stylecrafter_jax.parallel.mesh import create_mesh, describe_mesh
from stylecrafter_jax.train.base_weights import load_base_weights
from stylecrafter_jax.train.metrics import (MetricsLogger, StepTimer, check_finite, due, first_bad_step,
                                            peak_flops_per_device)
from stylecrafter_jax.train.stages import stage_rules
from stylecrafter_jax.train.state import (TrainState, checkpoint_tree, create_state, from_checkpoint_tree, merge,
                                          stage_labels)
from stylecrafter_jax.train.step import (LossModels, compile_step, learning_rate_schedule, make_optimizer,
                                         make_step_fn, temporal_mode)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """How a run ended: the step it reached and whether a preemption stopped it; its final state, the frozen
    encoders' parameters and the stage labels (None when the work directory already held the finished run)."""

    step: int
    preempted: bool = False
    state: TrainState | None = None
    encoder_params: dict[str, Any] | None = None
    labels: dict | None = None


def run(config: ml_collections.ConfigDict, *, log: Callable[[str], None] = print) -> RunResult:
    """Train `config` from scratch or from the newest checkpoint in `config.workdir`."""
    # ===== Mesh and work directory =====
    maybe_initialize(config.mesh.distributed)
    mesh = create_mesh(config.mesh)
    primary = is_primary()
    log(f"mesh {describe_mesh(mesh)}; process {jax.process_index()} of {jax.process_count()}")
    check_workdir(config, write=primary)
    check_base_weights(config, write=primary)
    stage_rules(config.stage)
    export = os.path.join(config.workdir, "export")
    done = exported_step(export)
    if done is not None and done >= config.train.steps:
        log(f"{config.workdir} holds the finished run (step {done}, exported to {export}); nothing to train")
        return RunResult(step=done)

    # ===== Data =====
    for batch_size in _batch_sizes(config):
        check_global_batch_size(batch_size, mesh)
    _check_packed_images(config, mesh)
    host_index, host_count = process_data_shard(mesh)
    tokenizer = load_tokenizer(context_length=config.model.text_encoder.context_length)
    data = make_iterator(config.data, process_index=host_index, process_count=host_count, tokenizer=tokenizer)

    # ===== Models, optimizer and state, born sharded =====
    encoders = build_encoders(config.model)
    labels = stage_labels(config)
    tx = make_optimizer(config.train, labels)
    base, encoder_params = load_base_weights(config, mesh, log=log)  # restored straight into their shardings
    state, state_shardings = create_state(config, tx, labels, mesh, base)
    empty_context = encode_text_context(encoders.text, encoder_params["text_encoder"], jnp.asarray(tokenizer([""])))
    empty_context = multihost_utils.process_allgather(empty_context, tiled=True)  # numpy: the step closes over it
    models = LossModels(unet=build_unet(config.model), adapter=build_adapter(config.model),
                        schedule=schedule_from_config(config.model), empty_context=empty_context)

    # ===== Restore =====
    checkpointer = RunCheckpointer(os.path.join(config.workdir, "checkpoints"), keep=config.train.keep_checkpoints,
                                   every=config.train.checkpoint_every, asynchronous=config.train.async_checkpoint)
    start = checkpointer.latest_step()
    if start is not None:
        restored, data_state = checkpointer.restore(start, checkpoint_tree(state, labels))
        state = from_checkpoint_tree(state, restored)
        data.set_state(data_state)
        log(f"resumed from step {start} ({checkpointer.directory})")
    start = int(state.step)

    # ===== Compile: a mixed run's two step kinds before the first step, any other on its first batch =====
    sharding = batch_sharding(mesh)

    def compile_kind(kind: str, abstract_batch: dict) -> tuple[Callable, float]:
        with activation_rules(mesh, config.mesh.rules):
            return compile_step(
                make_step_fn(models, tx, labels, config.train, temporal_mode(config.stage, kind)), state,
                abstract_batch, state_shardings=state_shardings, batch_shardings=sharding, log=log,
                name=f"{config.stage} step on {kind} {tuple(abstract_batch['latents'].shape)}")

    compiled: dict[str, tuple[Callable, float]] = {}  # kind -> (compiled step, its FLOPs)
    if isinstance(data, MixedIterator):
        inputs_of = functools.partial(step_inputs, encoders, encoder_params, seed=config.seed, step=start,
                                      sharding=sharding)
        for kind, host_batch in _peek_kinds(data, config):
            compiled[kind] = compile_kind(kind, jax.eval_shape(inputs_of, make_global_batch(host_batch, mesh)))

    # ===== Loop =====
    stop = threading.Event()  # set by this host's SIGTERM; `agree` makes every host stop at the same step
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    agree = StopAgreement()
    logger = MetricsLogger(config.workdir, primary=primary, total_steps=config.train.steps, start_step=start,
                           print_fn=log)
    periodic = PeriodicTasks(config, encoder_params, tokenizer, primary=primary, mesh=mesh, log=log) \
        if config.train.sample_every or config.train.eval_every else None
    timer = StepTimer(num_devices=mesh.size, peak_per_device=peak_flops_per_device(config.train.peak_flops_per_device))
    lr_at = learning_rate_schedule(config.train)
    batches = step_batches(data, config, mesh, encoders, encoder_params, start=start)
    step, preempted, bad = start, False, None  # bad: the first non-finite step, on device (first_bad_step)
    try:
        while step < config.train.steps:
            fetch_start = timer.clock()  # the encoders compile on their first call of a kind, too
            kind, batch = next(batches)
            if kind not in compiled:
                compiled[kind] = compile_kind(kind, abstract_arrays(batch))
            timer.fetched(kind, since=fetch_start)  # compile time is not step time
            step_fn, step_flops = compiled[kind]
            state, metrics = step_fn(state, batch)
            bad = first_bad_step(bad, metrics, step + 1)  # no host sync: checked at log and checkpoint steps
            step += 1
            logger.advance()
            timer.count(examples=batch["latents"].shape[0], flops=step_flops)
            if due(step, config.train.log_every, config.train.steps):
                check_finite(bad, step)
                scalars = {k: float(v) for k, v in jax.device_get(metrics).items() if k != "finite"}
                logger.log(step, {**scalars, "lr": float(lr_at(step - 1)), **timer.rates()})
                timer.restart()
            if periodic is not None and (scalars := periodic(step, state.params, state.ema)):
                logger.log(step, scalars)
            if checkpointer.manager.should_save(step):
                check_finite(bad, step)
            checkpointer.save(step, checkpoint_tree(state, labels), data.get_state())
            if agree(stop.is_set() or checkpointer.reached_preemption(step)):
                preempted = True
                if checkpointer.latest_step() != step:
                    check_finite(bad, step)
                    checkpointer.save(step, checkpoint_tree(state, labels), data.get_state(), force=True)
                log(f"stopping at step {step} on preemption; checkpoint saved")
                break
        check_finite(bad, step)
        if step == config.train.steps and checkpointer.latest_step() != step:
            checkpointer.save(step, checkpoint_tree(state, labels), data.get_state(), force=True)
    finally:
        checkpointer.close()
        logger.close()
        signal.signal(signal.SIGTERM, previous)

    # ===== Export =====
    if step == config.train.steps:  # on every host: orbax saves are collective
        export_run(config, state, encoder_params, export)
    return RunResult(step=step, preempted=preempted, state=state, encoder_params=encoder_params, labels=labels)


# ===== Batches =====

def step_batches(data: Iterator[dict], config: ml_collections.ConfigDict, mesh: Mesh, encoders: Encoders,
                 encoder_params: dict[str, Any], *, start: int) -> Iterator[tuple[str, dict[str, jax.Array]]]:
    """(kind, the step's inputs: global arrays in the batch sharding) of every step from `start` on, one host
    batch of `data` each."""
    sharding = batch_sharding(mesh)
    for step in itertools.count(start):
        kind, host_batch = _host_batch(next(data), config)
        yield kind, step_inputs(encoders, encoder_params, make_global_batch(host_batch, mesh), seed=config.seed,
                                step=step, sharding=sharding)


def step_inputs(encoders: Encoders, encoder_params: dict[str, Any], batch: dict, *, seed: int, step: int,
                sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
    """The step's inputs of a global batch: encoded by the frozen encoders, or read from the cache."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed + 1), step)
    if "tokens" not in batch:
        return inputs_from_cache(batch, key, sharding=sharding)
    return encode_batch(encoders, encoder_params, batch["tokens"], batch["style"], batch["target"], key,
                        sharding=sharding)


def _host_batch(raw: dict[str, Any], config: ml_collections.ConfigDict) -> tuple[str, dict]:
    """(kind, arrays) of a host batch: token ids (made by the data pipeline), uint8 style references and
    uint8 targets (b, t, h, w, 3) for the encoders, or the cached encoder outputs (their target under
    "latents" or "latent_moments")."""
    if "text_context" in raw:
        arrays = cached_arrays(raw, config.model.latent)
        target = next(key for key in TARGET_KEYS if key in arrays)
        arrays[target] = arrays[target][:, 0] if arrays[target].shape[1] == 1 else arrays[target]
        kind = "videos" if arrays[target].ndim == 5 else "images"
    else:
        kind, target = ("videos", "video") if "video" in raw else ("images", "image")
        arrays = {"tokens": raw["tokens"], "style": raw["style"], target: raw[target]}
    if temporal_mode(config.stage, kind) == "frame_isolated":
        arrays = _pack_images(arrays, config.data.videos.num_frames)  # pseudo-videos of `frames` images
    elif kind == "images":
        arrays[target] = arrays[target][:, None]
    return kind, {("target" if key in ("image", "video") else key): value for key, value in arrays.items()}


def _peek_kinds(data: MixedIterator, config: ml_collections.ConfigDict) -> list[tuple[str, dict]]:
    """(kind, host batch) of one image and one video batch; the iterator's position is left as it was."""
    position = data.get_state()
    batches = [_host_batch(next(data.images), config), _host_batch(next(data.videos), config)]
    data.set_state(position)
    return batches


def _batch_sizes(config: ml_collections.ConfigDict) -> list[int]:
    """The global batch sizes the data section will produce."""
    data = config.data
    if data.kind == "mixed":
        return [data.images.batch_size, data.videos.batch_size]
    return [data[data.kind].batch_size]


def _check_packed_images(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    """ConfigError unless the stage-2 image batch packs into pseudo-videos of the video frames over the mesh."""
    data = config.data
    if data.kind != "mixed" or temporal_mode(config.stage, "images") != "frame_isolated":
        return
    batch, frames = data.images.batch_size, data.videos.num_frames
    if batch % frames:
        raise ConfigError(f"data.images.batch_size {batch} must be a multiple of data.videos.num_frames {frames} "
                          "to pack image batches")
    if tuple(data.images.size) != tuple(data.videos.size):
        raise ConfigError(f"data.images.size {tuple(data.images.size)} must equal data.videos.size "
                          f"{tuple(data.videos.size)}: stage-2 image batches are packed into pseudo-videos")
    try:
        check_global_batch_size(batch // frames, mesh)
    except ConfigError as e:
        raise ConfigError(f"data.images.batch_size {batch} packs into {batch // frames} pseudo-videos of "
                          f"{frames} frames: {e}") from e


def _pack_images(arrays: dict[str, Any], frames: int) -> dict[str, Any]:
    """Image arrays (b, ...) -> (b / frames, frames, ...)."""
    batch = len(next(iter(arrays.values())))
    if batch % frames:
        raise ConfigError(f"data.images.batch_size {batch} must be a multiple of data.videos.num_frames {frames} "
                          "to pack image batches")
    return {key: a.reshape((batch // frames, frames) + a.shape[1:]) for key, a in arrays.items()}


# ===== Work directory records: a restart with another model, stage or base is refused =====

STRUCTURAL = ("model", "stage")
BASE_RECORD = "base_weights.json"


def check_workdir(config: ml_collections.ConfigDict, *, write: bool) -> None:
    """Raise ConfigError if `config.workdir` holds a run whose model or stage differs; else record this one."""
    path = os.path.join(config.workdir, "config.json")
    current = json.loads(config.to_json_best_effort())
    recorded = _recorded_or_write(path, current, write)
    if recorded is not None:
        old = _flatten({k: recorded.get(k) for k in STRUCTURAL})
        new = _flatten({k: current[k] for k in STRUCTURAL})
        diffs = [f"{key}: recorded {old.get(key)!r}, now {new.get(key)!r}" for key in sorted(set(old) | set(new))
                 if old.get(key) != new.get(key)]
        if diffs:
            raise ConfigError(f"work directory {config.workdir} holds a run of another config; use a new "
                              "--config.workdir or the same config:\n  " + "\n  ".join(diffs[:20]))


def check_base_weights(config: ml_collections.ConfigDict, *, write: bool) -> None:
    """Refuse a full-size run on a random base (unless `allow_random_base`) and a work directory trained on
    other base weights (ConfigError naming both); else record this run's base."""
    if config.model.size == "full" and not config.pretrained and not config.allow_random_base:
        raise ConfigError("full-size training needs --config.pretrained=DIR (converted base weights: python -m "
                          "stylecrafter_jax.convert import ...); --config.allow_random_base=True trains on a "
                          "random base anyway")
    path = os.path.join(config.workdir, BASE_RECORD)
    current = {"pretrained": config.pretrained, "base": base_weights_id(config)}
    recorded = _recorded_or_write(path, current, write)
    if recorded is not None and recorded["base"] != current["base"]:
        raise ConfigError(f"work directory {config.workdir} was trained on the base weights "
                          f"{_describe(recorded)}, not on {_describe(current)}: resume with the same "
                          "--config.pretrained or use a new --config.workdir")


def _recorded_or_write(path: str, current: dict, write: bool) -> dict | None:
    """The record at `path`, or None when there is none yet (then `current` is written there if `write`:
    whole, since other hosts may be reading it already)."""
    if epath.Path(path).exists():
        return json.loads(epath.Path(path).read_bytes())
    if write:
        paths.write_text(path, json.dumps(current, indent=2, sort_keys=True))
    return None


def base_weights_id(config: ml_collections.ConfigDict) -> str:
    """"random", or the sha256 of `config.pretrained`'s manifest (with the components taken, when chosen)."""
    if not config.pretrained:
        return "random"
    read_manifest(config.pretrained)  # a clear error when it is not a converted directory
    digest = hashlib.sha256(epath.Path(config.pretrained, MANIFEST).read_bytes()).hexdigest()
    components = f" (components {config.pretrained_components})" if config.pretrained_components else ""
    return f"manifest sha256 {digest}{components}"


def _describe(record: dict) -> str:
    return "random" if record["base"] == "random" else f"{record['pretrained']} ({record['base']})"


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts -> {"a.b.c": leaf}."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, object] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return out

# ===== Export: the converted-checkpoint format that `sample` and `evaluate` load =====

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
