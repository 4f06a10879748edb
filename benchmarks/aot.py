"""Ahead-of-time compiles of the real train step or sampler for a TPU topology, on any host (needs libtpu).

python -m benchmarks.aot --config=configs/stage1.py --topology=v5p-8 [--batch N] [--mesh D,F,T]
    [--remat P] [--attention A] [--dtype D] [--kind images|videos|sampler] [--json]
The state is born sharded over the topology's devices from abstract arrays only; a training config
compiles `train.step` on each batch kind it trains on (stage 2: the videos and the packed image batch),
configs/inference.py compiles the guided DDIM loop (every step, all guidance branches) at --batch samples.
One row per compile: seconds, per-chip bytes against the chip's HBM, XLA FLOPs, the bound at the chip's
bf16 peak, the compiler's own step-time estimate and the MFU it implies (an estimate, not a measurement),
and the collectives in the compiled HLO. The sampler's FLOPs and estimate are per denoising step (XLA's
cost analysis counts the scanned step once); "est. s / sample" is the estimate x steps / batch.
Exit status 1 when a row does not fit, 2 on bad input.
Topologies: v5p-N (N TensorCores, 2 per chip), v6e-N and v5litepod-N (N chips), or libtpu's own
`v5p:2x2x1`-style names.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from stylecrafter_jax.cli import load_config_file
from stylecrafter_jax.conditioning.frozen import build_encoders, encode_batch, init_encoder_params
from stylecrafter_jax.diffusion.ddim import make_sampler
from stylecrafter_jax.diffusion.guidance import GuidanceInputs
from stylecrafter_jax.diffusion.schedule import process_from_config, schedule_from_config
from stylecrafter_jax.errors import ConfigError, StyleCrafterError
from stylecrafter_jax.models.attention import IMPLEMENTATIONS
from stylecrafter_jax.models.build import build_adapter, build_unet, param_shapes
from stylecrafter_jax.models.remat import REMAT_POLICIES
from stylecrafter_jax.parallel.arrays import abstract_arrays, batch_sharding, check_global_batch_size
from stylecrafter_jax.parallel.init import activation_rules
from stylecrafter_jax.parallel.mesh import create_mesh
from stylecrafter_jax.sampling.settings import pixels_per_latent
from stylecrafter_jax.train.metrics import peak_flops_per_device
from stylecrafter_jax.train.state import create_state, stage_labels
from stylecrafter_jax.train.step import LossModels, compile_step, make_optimizer, make_step_fn, temporal_mode

GIB = 2 ** 30


class Chip(NamedTuple):
    """A TPU generation: libtpu's name, HBM bytes per chip, TensorCores in a name's count, torus dimensions."""

    libtpu: str
    hbm: int
    cores_per_count: int
    dims: int


CHIPS = {
    "v5p": Chip("v5p", 95 * GIB, 2, 3),
    "v6e": Chip("v6e", 32 * GIB, 1, 2),
    "v5litepod": Chip("v5e", 16 * GIB, 1, 2),
}
COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce")


def slice_shape(chips: int, dims: int) -> tuple[int, ...]:
    """The chip grid of a slice of `chips` chips (a power of two), as Cloud TPU lays slices out (2x2x1, 2x2x2,
    2x2x4, 2x4x4, 4x4x4, ...; 2x2, 2x4, 4x4, 4x8, ...)."""
    if chips < 1 or chips & (chips - 1):
        raise ConfigError(f"a slice of {chips} chips: expected a power of two")
    shape = [1] * dims
    while math.prod(shape) < chips:
        if math.prod(shape) < 4:  # one host's 2x2 first
            index = 0 if shape[0] == 1 else 1
        else:  # then the smallest side doubles, the last of equal sides first
            index = max(i for i, side in enumerate(shape) if side == min(shape))
        shape[index] *= 2
    return tuple(shape)


def topology_devices(name: str) -> tuple[list[Any], Chip]:
    """The devices of a named TPU topology (from libtpu, no TPU needed) and the chip's figures."""
    match = re.fullmatch(r"(v5p|v6e|v5litepod)-(\d+)", name)
    raw = re.fullmatch(r"(v5p|v6e|v5e):(\d+(?:x\d+)+)", name)
    if match:
        chip = CHIPS[match.group(1)]
        count = int(match.group(2))
        if count % chip.cores_per_count:
            raise ConfigError(f"--topology {name!r}: {match.group(1)} names count TensorCores, "
                              f"{chip.cores_per_count} per chip; expected a multiple of {chip.cores_per_count}")
        grid = slice_shape(count // chip.cores_per_count, chip.dims)
        layout = f"{chip.libtpu}:{'x'.join(map(str, grid))}"
    elif raw:
        chip = next(c for c in CHIPS.values() if c.libtpu == raw.group(1))
        layout = name
    else:
        raise ConfigError(f"--topology {name!r}: expected v5p-N, v6e-N, v5litepod-N or a libtpu name like "
                          "v5p:2x2x1")
    sides = [int(s) for s in layout.split(":")[1].split("x")]
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5p-8")  # libtpu then skips probing the host for a TPU
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # no TPU is opened, so no lock on one is needed
    from jax.experimental import topologies

    host = (min(sides[0], 2), min(sides[1], 2), 1)  # chips per host: 2x2x1, fewer on a smaller slice
    try:
        description = topologies.get_topology_desc(topology_name=layout, platform="tpu",
                                                   chips_per_host_bounds=host)
    except Exception as e:  # libtpu's errors are plain runtime errors
        raise ConfigError(f"--topology {name!r} ({layout}): libtpu refused the topology: "
                          f"{str(e).splitlines()[0]}") from e
    return list(description.devices), chip


def configure(config: ml_collections.ConfigDict, args: argparse.Namespace) -> None:
    """Apply --mesh, --remat, --attention and --dtype to the config, checking each."""
    if args.remat is not None and args.remat not in REMAT_POLICIES:
        raise ConfigError(f"--remat {args.remat!r}: no such remat policy; expected one of {sorted(REMAT_POLICIES)}")
    if args.attention is not None and args.attention not in IMPLEMENTATIONS:
        raise ConfigError(f"--attention {args.attention!r}: expected one of {IMPLEMENTATIONS}")
    with config.unlocked():
        for key, value in (("remat_policy", args.remat), ("attention", args.attention), ("dtype", args.dtype)):
            if value is not None:
                config.model[key] = value
        if args.mesh:
            sizes = args.mesh.split(",")
            if len(sizes) != 3 or not all(re.fullmatch(r"-?\d+", s) for s in sizes):
                raise ConfigError(f"--mesh {args.mesh!r}: expected three sizes data,fsdp,tensor, e.g. 1,4,1")
            config.mesh.data, config.mesh.fsdp, config.mesh.tensor = (int(s) for s in sizes)


def host_batch_shapes(config: ml_collections.ConfigDict, kind: str, batch: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of the encoders' inputs for a global batch of `kind`, as the trainer's input section makes them."""
    section = config.data[kind]
    height, width = section.size
    crop = section.style_output or section.style_crop
    frames = section.num_frames if kind == "videos" else 1
    lead: tuple[int, ...] = (batch,)
    if temporal_mode(config.stage, kind) == "frame_isolated":
        packed = config.data.videos.num_frames
        if batch % packed:
            raise ConfigError(f"--batch {batch}: a packed image batch needs a multiple of {packed} images")
        lead, frames = (batch // packed, packed), packed
    u8, i32 = jnp.uint8, jnp.int32
    target = (lead[0], frames, height, width, 3)
    return {"tokens": jax.ShapeDtypeStruct(lead + (77,), i32),
            "style": jax.ShapeDtypeStruct(lead + (crop, crop, 3), u8),
            "target": jax.ShapeDtypeStruct(target, u8)}


def encoded_batch(config: ml_collections.ConfigDict, kind: str, batch: int, mesh: Mesh) -> dict:
    """The train step's batch (encoder outputs) for a global batch of `kind`, sharded over the mesh."""
    encoders = build_encoders(config.model)
    params = jax.eval_shape(lambda key: init_encoder_params(encoders, key), jax.random.PRNGKey(0))
    inputs = host_batch_shapes(config, kind, batch)
    shapes = jax.eval_shape(lambda p, x, k: encode_batch(encoders, p, x["tokens"], x["style"], x["target"], k),
                            params, inputs, jax.random.PRNGKey(0))
    return abstract_arrays(shapes, jax.tree.map(lambda _: batch_sharding(mesh), shapes))


def compile_train(config: ml_collections.ConfigDict, kind: str, batch: int, mesh: Mesh) -> tuple[Any, float]:
    """(compiled, seconds) of the real train step on a global batch of `kind`."""
    check_global_batch_size(batch if temporal_mode(config.stage, kind) != "frame_isolated"
                            else batch // config.data.videos.num_frames, mesh)
    labels = stage_labels(config)
    tx = make_optimizer(config.train, labels)
    state, shardings = create_state(config, tx, labels, mesh, abstract=True)
    text = config.model.text_encoder
    models = LossModels(build_unet(config.model), build_adapter(config.model), schedule_from_config(config.model),
                        np.zeros((1, text.context_length, text.width), np.float32))
    mode = temporal_mode(config.stage, kind)
    abstract_batch = encoded_batch(config, kind, batch, mesh)
    start = time.perf_counter()
    with activation_rules(mesh, config.mesh.rules):
        compiled, _ = compile_step(make_step_fn(models, tx, labels, config.train, mode), state, abstract_batch,
                                       state_shardings=shardings, batch_shardings=batch_sharding(mesh),
                                       log=lambda line: None)
    return compiled, time.perf_counter() - start


def compile_sampler(config: ml_collections.ConfigDict, batch: int, mesh: Mesh) -> tuple[Any, float, int]:
    """(compiled, seconds, denoising steps) of the guided DDIM loop the sampling pipeline runs, for `batch` samples."""
    model, sampling = config.model, config.sampling
    check_global_batch_size(batch, mesh)
    unet, adapter = build_unet(model), build_adapter(model)
    sampler = make_sampler(lambda p, x, t, c, s: unet.apply({"params": p}, x, t, c, s), process_from_config(model),
                           sampling)
    f = pixels_per_latent(model)
    latent = (sampling.frames, sampling.height // f, sampling.width // f, model.unet.in_channels)
    replicated, split = NamedSharding(mesh, PartitionSpec()), batch_sharding(mesh)
    unet_shapes = nn.unbox(param_shapes(model))["unet"]
    unet_params = abstract_arrays(unet_shapes, jax.tree.map(lambda _: replicated, unet_shapes))
    width = model.unet.context_dim
    f32 = jnp.float32
    cond = GuidanceInputs(
        params=unet_params,
        text=jax.ShapeDtypeStruct((batch, model.unet.text_length, width), f32, sharding=split),
        empty_text=jax.ShapeDtypeStruct((1, model.unet.text_length, width), f32, sharding=replicated),
        style=jax.ShapeDtypeStruct((batch, model.adapter.style_tokens, width), f32, sharding=split),
        multipliers=jax.ShapeDtypeStruct((batch, adapter.num_cross_layers), f32, sharding=split))
    keys = jax.ShapeDtypeStruct((batch,), jax.random.key(0).dtype, sharding=split)
    start = time.perf_counter()
    with activation_rules(mesh, config.mesh.rules):
        compiled = jax.jit(lambda c, k: sampler.sample(c, k, latent)).lower(cond, keys).compile()
    return compiled, time.perf_counter() - start, sampler.num_steps


def row(compiled: Any, seconds: float, chip: Chip, chips: int, peak: float) -> dict[str, Any]:
    """The measured columns of one compile; the compiled module's FLOPs are per chip, `peak` its bf16 FLOP/s."""
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    hlo = compiled.as_text()
    arguments, outputs = memory.argument_size_in_bytes, memory.output_size_in_bytes
    temporaries, aliased = memory.temp_size_in_bytes, memory.alias_size_in_bytes
    total = arguments + outputs - aliased + temporaries + memory.generated_code_size_in_bytes
    per_chip_flops = float(cost.get("flops", 0.0))
    estimate = float(cost.get("optimal_seconds", 0.0))
    estimate = estimate if estimate > 0 else None  # libtpu's v6e model can return a negative figure: none then
    return {
        "compile_s": round(seconds, 1),
        "arguments_gib": arguments / GIB, "outputs_gib": outputs / GIB, "temporaries_gib": temporaries / GIB,
        "total_gib": total / GIB, "hbm_gib": chip.hbm / GIB, "fits": total <= chip.hbm,
        "tflop_per_step": per_chip_flops * chips / 1e12, "tflop_per_chip": per_chip_flops / 1e12,
        "bound_s": per_chip_flops / peak,
        "estimate_s": estimate,
        "estimated_mfu": None if estimate is None else per_chip_flops / peak / estimate,
        **{name: len(re.findall(rf"\b{name}(?:-start)?\(", hlo)) for name in COLLECTIVES},
    }


def header() -> str:
    """The table header (Markdown)."""
    names = ["config", "kind", "topology", "chips", "batch", "mesh (d,f,t)", "dtype", "attention", "remat",
             "compile s", "args GiB", "outputs GiB", "temps GiB", "total GiB / HBM", "fits", "TFLOP/step",
             "bound s (peak)", "XLA est. s", "est. MFU", "est. s / sample", "all-gather", "reduce-scatter",
             "all-reduce"]
    return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)


def markdown(r: dict[str, Any]) -> str:
    """One table row."""
    cells = [r["config"], r["kind"], r["topology"], r["chips"], r["batch"], r["mesh"], r["dtype"], r["attention"],
             r["remat"], f"{r['compile_s']:.0f}", f"{r['arguments_gib']:.2f}", f"{r['outputs_gib']:.2f}",
             f"{r['temporaries_gib']:.2f}", f"{r['total_gib']:.1f} / {r['hbm_gib']:.0f}",
             "yes" if r["fits"] else "no", f"{r['tflop_per_step']:.1f}", f"{r['bound_s']:.3f}",
             *(("n/a",) * 3 if r["estimate_s"] is None else (f"{r['estimate_s']:.3f}", f"{100 * r['estimated_mfu']:.0f}%",
                                                               f"{r['estimate_per_sample_s']:.3f}")),
             r["all-gather"], r["reduce-scatter"],
             r["all-reduce"]]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Compile every row the arguments ask for."""
    config = load_config_file(args.config)
    configure(config, args)
    devices, chip = topology_devices(args.topology)
    peak = peak_flops_per_device(device_kind=devices[0].device_kind)
    if peak is None:
        raise ConfigError(f"--topology {args.topology!r}: no bf16 peak known for device kind {devices[0].device_kind!r}")
    mesh = create_mesh(config.mesh, devices)
    if os.path.basename(args.config.partition(":")[0]).startswith("inference"):
        kinds = ["sampler"]
    else:
        kinds = ["images", "videos"] if config.data.kind == "mixed" else [config.data.kind]
    if args.kind:
        if args.kind not in kinds:
            raise ConfigError(f"--kind {args.kind!r}: {args.config} compiles {kinds}")
        kinds = [args.kind]
    rows = []
    for kind in kinds:
        batch = args.batch or (1 if kind == "sampler" else config.data[kind].batch_size)
        if kind == "sampler":  # XLA's cost analysis counts the scanned step once: FLOPs and estimate per step
            compiled, seconds, steps = compile_sampler(config, batch, mesh)
        else:
            (compiled, seconds), steps = compile_train(config, kind, batch, mesh), 1
        rows.append({"config": args.config, "kind": kind, "topology": args.topology, "chips": mesh.size,
                     "batch": batch, "mesh": ",".join(str(s) for s in mesh.shape.values()),
                     "dtype": config.model.dtype, "attention": config.model.attention,
                     "remat": config.model.remat_policy, **row(compiled, seconds, chip, mesh.size, peak)})
        estimate = rows[-1]["estimate_s"]
        rows[-1]["estimate_per_sample_s"] = None if estimate is None else estimate * steps / batch
        print(json.dumps(rows[-1]) if args.json else (header() + "\n" if len(rows) == 1 else "") + markdown(rows[-1]),
              flush=True)
    return rows


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aot", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="PATH.py[:ARG]: a stage config or configs/inference.py")
    parser.add_argument("--topology", required=True, help="v5p-8, v6e-1, v5litepod-4, ... or v5p:2x2x1")
    parser.add_argument("--batch", type=int, default=0, help="global batch (samples for the sampler); "
                        "default: the config's")
    parser.add_argument("--mesh", default="", help="data,fsdp,tensor sizes; default: the config's mesh section")
    parser.add_argument("--remat", default=None, help=f"remat policy, one of {sorted(REMAT_POLICIES)}")
    parser.add_argument("--attention", default=None, help=f"attention kernel, one of {IMPLEMENTATIONS}")
    parser.add_argument("--dtype", default=None, help="compute dtype (float32, bfloat16)")
    parser.add_argument("--kind", default=None, help="only this batch kind (images, videos) of a training config")
    parser.add_argument("--json", action="store_true", help="print each row as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the rows; 1 when a row does not fit, 2 on bad input."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        rows = run(args)
    except StyleCrafterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    over = [r for r in rows if not r["fits"]]
    for r in over:
        print(f"does not fit: {r['kind']} batch {r['batch']} needs {r['total_gib']:.1f} GiB per chip, "
              f"{r['total_gib'] - r['hbm_gib']:.1f} GiB over the {r['hbm_gib']:.0f} GiB of HBM", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
