"""The training run, as one linear function in sections: mesh, input, models, state, restore, compile, loop."""

from __future__ import annotations

import functools
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
from jax.experimental import multihost_utils

from stylecrafter_jax.train.stages import stage_rules
from stylecrafter_jax.cache.read import TARGET_KEYS, cached_arrays, inputs_from_cache
from stylecrafter_jax.checkpoints.run_checkpoints import RunCheckpointer
from stylecrafter_jax.conditioning.encoders import encode_text_context
from stylecrafter_jax.conditioning.frozen import build_encoders, encode_batch
from stylecrafter_jax.conditioning.tokenizer import load_tokenizer
from stylecrafter_jax.data.iterators import make_iterator
from stylecrafter_jax.data.mixing import MixedIterator
from stylecrafter_jax.diffusion.schedule import schedule_from_config
from stylecrafter_jax.errors import ConfigError, StyleCrafterError
from stylecrafter_jax.models.build import build_adapter, build_unet
from stylecrafter_jax.parallel.arrays import (abstract_arrays, batch_sharding, check_global_batch_size,
                                              make_global_batch, process_data_shard)
from stylecrafter_jax.parallel.distributed import StopAgreement, is_primary, maybe_initialize
from stylecrafter_jax.parallel.init import activation_rules
from stylecrafter_jax.parallel.mesh import create_mesh, describe_mesh
from stylecrafter_jax.train.base_weights import load_base_weights
from stylecrafter_jax.train.export import export_run, exported_step
from stylecrafter_jax.train.init import create_state, stage_labels
from stylecrafter_jax.train.logger import MetricsLogger
from stylecrafter_jax.train.loss import LossModels
from stylecrafter_jax.train.optimizer import learning_rate_schedule, make_optimizer
from stylecrafter_jax.train.periodic import PeriodicTasks
from stylecrafter_jax.train.state import TrainState, merge, trainable
from stylecrafter_jax.train.step import compile_step, make_step_fn
from stylecrafter_jax.train.throughput import peak_flops_per_device, throughput
from stylecrafter_jax.train.workdir import check_base_weights, check_workdir

IMAGE_MODES = {"stage2": "frame_isolated"}


class TrainingStopped(StyleCrafterError, RuntimeError):
    """The run stopped on a non-finite loss or gradient; the message names the step."""


def run(config: ml_collections.ConfigDict, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train `config` from scratch or from the newest checkpoint in `config.workdir`; returns a summary
    (state, encoder_params and labels are None when the work directory already holds the finished run)."""
    # ---------------------------------------------------------------- mesh and work directory
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
        return {"step": done, "state": None, "encoder_params": None, "labels": None, "preempted": False}

    # ---------------------------------------------------------------- input
    for batch_size in _batch_sizes(config):
        check_global_batch_size(batch_size, mesh)
    _check_packed_images(config, mesh)
    host_index, host_count = process_data_shard(mesh)
    tokenizer = load_tokenizer(context_length=config.model.text_encoder.context_length)
    data = make_iterator(config.data, process_index=host_index, process_count=host_count, tokenizer=tokenizer)
    empty_tokens = tokenizer([""])

    # ---------------------------------------------------------------- models and optimizer
    encoders = build_encoders(config.model)
    labels = stage_labels(config)
    tx = make_optimizer(config.train, labels)
    schedule = schedule_from_config(config.model)
    lr_at = learning_rate_schedule(config.train)

    # ---------------------------------------------------------------- state, born sharded
    base, encoder_params = load_base_weights(config, mesh, log=log)  # restored straight into their shardings
    state, state_shardings = create_state(config, tx, labels, mesh, base)
    empty_context = encode_text_context(encoders.text, encoder_params["text_encoder"], jnp.asarray(empty_tokens))
    empty_context = multihost_utils.process_allgather(empty_context, tiled=True)  # numpy: the step closes over it
    models = LossModels(build_unet(config.model), build_adapter(config.model), schedule, empty_context)

    # ---------------------------------------------------------------- restore
    checkpointer = RunCheckpointer(os.path.join(config.workdir, "checkpoints"), keep=config.train.keep_checkpoints,
                                   every=config.train.checkpoint_every, asynchronous=config.train.async_checkpoint)
    start = checkpointer.latest_step()
    if start is not None:
        restored, data_state = checkpointer.restore(start, _checkpoint_tree(state, labels))
        state = _from_checkpoint_tree(state, restored)
        data.set_state(data_state)
        log(f"resumed from step {start} ({checkpointer.directory})")
    start = int(state.step)

    # ---------------------------------------------------------------- compile on first use, loop
    stop = {"signal": None}  # set by this host's SIGTERM; `agree` makes every host stop at the same step
    agree, preempted = StopAgreement(), False
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(signal=signum))
    logger = MetricsLogger(config.workdir, primary=primary, total_steps=config.train.steps, start_step=start,
                           print_fn=log)
    periodic = PeriodicTasks(config, encoder_params, tokenizer, primary=primary, mesh=mesh, log=log) \
        if config.train.sample_every or config.train.eval_every else None
    compiled: dict[str, tuple[Callable, float]] = {}
    peak = peak_flops_per_device(config.train.peak_flops_per_device)
    bad = None  # the first non-finite step, on device (_first_bad_step)

    def compile_kind(kind: str, abstract_batch: dict) -> None:
        mode = IMAGE_MODES.get(config.stage, "skip") if kind == "images" else "full"
        with activation_rules(mesh, config.mesh.rules):
            compiled[kind] = compile_step(
                make_step_fn(models, tx, labels, config.train, mode), state, abstract_batch,
                state_shardings=state_shardings, batch_shardings=batch_sharding(mesh), log=log,
                name=f"{config.stage} step on {kind} {tuple(abstract_batch['latents'].shape)}")

    seen: set[str] = set()  # the step kinds met so far
    if isinstance(data, MixedIterator):  # both step kinds compile before the first step
        encode_shapes = functools.partial(_encode, encoders, encoder_params, seed=config.seed, step=start,
                                          sharding=batch_sharding(mesh))
        for kind, host_batch in _peek_kinds(data, config):
            compile_kind(kind, jax.eval_shape(encode_shapes, make_global_batch(host_batch, mesh)))
    window = {"start": time.perf_counter(), "steps": 0, "flops": 0.0, "examples": 0}
    step = start
    try:
        while step < config.train.steps:
            raw = next(data)
            kind, host_batch = _host_batch(raw, config)
            compile_start = time.perf_counter()  # the encoders compile on their first call of a kind, too
            encoded = _encode(encoders, encoder_params, make_global_batch(host_batch, mesh), config.seed, step,
                              batch_sharding(mesh))
            if kind not in compiled:
                compile_kind(kind, abstract_arrays(encoded))
            if kind not in seen:
                seen.add(kind)
                window["start"] += time.perf_counter() - compile_start  # compile time is not step time
            step_fn, step_flops = compiled[kind]
            state, metrics = step_fn(state, encoded)
            bad = _first_bad_step(bad, metrics, step + 1)  # no host sync: checked at log and checkpoint steps
            step += 1
            logger.advance()
            window["steps"] += 1
            window["flops"] += step_flops
            window["examples"] += encoded["latents"].shape[0]
            if step % config.train.log_every == 0 or step == config.train.steps:
                _check_finite(bad, step)
                scalars = {k: float(v) for k, v in jax.device_get(metrics).items() if k != "finite"}
                scalars["lr"] = float(lr_at(step - 1))
                scalars.update(throughput(steps=window["steps"], seconds=time.perf_counter() - window["start"],
                                          examples=window["examples"], flops=window["flops"],
                                          num_devices=mesh.size, peak_per_device=peak))
                logger.log(step, scalars)
                window = {"start": time.perf_counter(), "steps": 0, "flops": 0.0, "examples": 0}
            if periodic is not None:
                scalars = periodic(step, state.params, state.ema)
                if scalars:
                    logger.log(step, scalars)
            if checkpointer.manager.should_save(step):
                _check_finite(bad, step)
            checkpointer.save(step, _checkpoint_tree(state, labels), data.get_state())
            if agree(stop["signal"] is not None or checkpointer.reached_preemption(step)):
                preempted = True
                if checkpointer.latest_step() != step:
                    _check_finite(bad, step)
                    checkpointer.save(step, _checkpoint_tree(state, labels), data.get_state(), force=True)
                log(f"stopping at step {step} on preemption; checkpoint saved")
                break
        _check_finite(bad, step)
        if step == config.train.steps and checkpointer.latest_step() != step:
            checkpointer.save(step, _checkpoint_tree(state, labels), data.get_state(), force=True)
    finally:
        checkpointer.close()
        logger.close()
        signal.signal(signal.SIGTERM, previous)
    if step == config.train.steps:  # on every host: orbax saves are collective
        export_run(config, state, encoder_params, export)
    return {"step": step, "state": state, "encoder_params": encoder_params, "labels": labels,
            "preempted": preempted}


def _batch_sizes(config: ml_collections.ConfigDict) -> list[int]:
    """The global batch sizes the data section will produce."""
    data = config.data
    if data.kind == "mixed":
        return [data.images.batch_size, data.videos.batch_size]
    return [data[data.kind].batch_size]


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
    if kind == "images" and IMAGE_MODES.get(config.stage) == "frame_isolated":
        arrays = _pack_images(arrays, config.data.videos.num_frames)  # pseudo-videos of `frames` images
    elif kind == "images":
        arrays[target] = arrays[target][:, None]
    return kind, {("target" if key in ("image", "video") else key): value for key, value in arrays.items()}


def _check_packed_images(config: ml_collections.ConfigDict, mesh) -> None:
    """ConfigError unless the stage-2 image batch packs into pseudo-videos of the video frames over the mesh."""
    data = config.data
    if data.kind != "mixed" or IMAGE_MODES.get(config.stage) != "frame_isolated":
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


def _peek_kinds(data: MixedIterator, config: ml_collections.ConfigDict) -> list[tuple[str, dict]]:
    """(kind, host batch) of one image and one video batch; the iterator's position is left as it was."""
    position = data.get_state()
    batches = [_host_batch(next(data.images), config), _host_batch(next(data.videos), config)]
    data.set_state(position)
    return batches


def _pack_images(arrays: dict[str, Any], frames: int) -> dict[str, Any]:
    """Image arrays (b, ...) -> (b / frames, frames, ...)."""
    batch = len(next(iter(arrays.values())))
    if batch % frames:
        raise ConfigError(f"data.images.batch_size {batch} must be a multiple of data.videos.num_frames {frames} "
                          "to pack image batches")
    return {key: a.reshape((batch // frames, frames) + a.shape[1:]) for key, a in arrays.items()}


def _encode(encoders, encoder_params, batch: dict, seed: int, step: int, sharding) -> dict:
    """The step's inputs of a global batch: encoded by the frozen encoders, or read from the cache."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed + 1), step)
    if "tokens" not in batch:
        return inputs_from_cache(batch, key, sharding=sharding)
    return encode_batch(encoders, encoder_params, batch["tokens"], batch["style"], batch["target"], key,
                        sharding=sharding)


@jax.jit
def _first_bad_step(bad: dict | None, metrics: dict, step: int) -> dict:
    """`bad` ({"step", "loss", "grad_norm"} of the first non-finite step; step 0 or None: none yet) after `step`."""
    if bad is None:
        bad = {"step": jnp.zeros((), jnp.int32), "loss": jnp.zeros_like(metrics["loss"]),
               "grad_norm": jnp.zeros_like(metrics["grad_norm"])}
    first = (bad["step"] == 0) & ~metrics["finite"]
    return {"step": jnp.where(first, step, bad["step"]), "loss": jnp.where(first, metrics["loss"], bad["loss"]),
            "grad_norm": jnp.where(first, metrics["grad_norm"], bad["grad_norm"])}


def _check_finite(bad: dict, step: int) -> None:
    """Stop the run at `step` if a step before had a non-finite loss or gradient (`bad` of _first_bad_step)."""
    bad = jax.device_get(bad)
    if bad is not None and int(bad["step"]):
        raise TrainingStopped(f"non-finite loss or gradient at step {int(bad['step'])} (loss={float(bad['loss'])}, "
                              f"grad_norm={float(bad['grad_norm'])}); that update was not applied; the run stopped "
                              f"at step {step}, before saving it; the newest checkpoint is intact")


def _checkpoint_tree(state: TrainState, labels: dict) -> dict:
    """What a checkpoint holds: the trainable leaves, optimizer state, EMA, step and RNG (no frozen leaves)."""
    return {"step": state.step, "trainable": trainable(state.params, labels), "opt_state": state.opt_state,
            "ema": state.ema, "rng": state.rng}


def _from_checkpoint_tree(state: TrainState, tree: dict) -> TrainState:
    return state.replace(step=tree["step"], params=merge(state.params, tree["trainable"]),
                         opt_state=tree["opt_state"], ema=tree["ema"], rng=tree["rng"])
