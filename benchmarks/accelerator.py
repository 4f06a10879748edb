"""One prepared accelerator run: the style model's sampling and training beside the official PyTorch sampler.

python -m benchmarks.accelerator [--size full|tiny|small] [--json OUT] [--official third_party/StyleCrafter]
                                 [--budget-s 480] [--steps 50] [--batches 1,4] [--dtypes bfloat16,float32]
                                 [--parts video,official,unet,vae,stage1,stage2] [--official-dtypes fp32,fp16]
                                 [--train-dtype bfloat16] [--train-max-batch 64] [--train-steps 3]
                                 [--repeats 3] [--torch-threads 0]

Prints one table (every column in every row; "n/a" where a column does not apply, "skipped" where the
time budget left the row out) and writes it as JSON, rewritten after every row so that a killed run
keeps what it measured. Sizes: "full" is configs/inference.py (16x320x512 videos), "tiny" its tiny
model (4x64x64, for the CPU test), "small" the CPU side-by-side config (U-Net width 64, 4x16x24 latents).
Random weights throughout; the init attention and ScaleEncoder are shaped as the official code builds
them (at full size those are our defaults).

Rows, run in priority order, printed in this one:
- video (jax): the sampling pipeline (official guidance 15 / 7.5, eta 1) per dtype and batch:
  conditioning (CLIP towers, adapter), the DDIM scan (the 3 guidance branches of a step as one batched
  U-Net call; its compile is `compile_s`), the VAE decode. s per video = all three / batch;
- video (official torch): `benchmarks/official.py`, the official DDIMStyleSampler (3 U-Net calls per
  step) at the first batch, fp32 and fp16 autocast, conditioning = the adapter on random CLIP-shaped
  tokens (no CLIP towers there), then the official VAE decoder. `speedup` = the official fp32 s per
  video over the row's;
- U-Net forward (batch 3, one guided step's call) and VAE decode (one video) per dtype;
- stage-1 / stage-2 step: one train step (configs/stage1.py images, configs/stage2.py videos; random
  weights, synthetic encoded batches straight into the step; `--train-dtype` compute, float32
  parameters) at the largest per-device batch found by doubling from 1 until out of memory (XLA's memory
  estimate over the free device memory counts as out of memory; on a GPU the powers of two that the
  estimate of the last compile already says fit with a margin are skipped), `--train-max-batch` or the
  budget stops it.
Image-to-video rows (DynamiCrafter, VideoCrafter i2v) are to join as parts once those models are in the
package; the JSON lists them under "pending".

MFU: model FLOP/s over the device's dense bf16 peak (stylecrafter_jax/train/metrics.py: H100 and H200
989, A100 312 TFLOP/s; none on CPU: n/a). FLOPs: a full-size 16x40x64 U-Net forward counts 10.923 TFLOP
(the reference's matmuls and convolutions); everything else XLA's cost analysis. peak_gib: the device's
peak bytes in use (JAX memory_stats, cumulative since the process started, as JAX cannot reset it; torch's
max_memory_allocated per row); the CPU backend has no such statistic (n/a). xla_gib: the compiled
program's arguments + outputs + temporaries by XLA's memory analysis (CPU rows report this one).
Budget: a row that the times measured so far say will not fit in what is left of --budget-s is skipped.
A part that fails leaves an "error" row naming the exception, and the run goes on. --torch-threads 1
keeps torch usable on a CPU shared with other jobs (its thread pool stalls there).
"""

from __future__ import annotations

import os

# Torch shares the device with JAX in this process: JAX allocates on demand, up to 90% of the memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.9")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.sample import REFERENCE_VIDEO_FLOPS, FixedTokenizer, unet_flops  # noqa: E402
from configs.inference import get_config  # noqa: E402
from stylecrafter_jax.conditioning.encoders import decode_video  # noqa: E402
from stylecrafter_jax.diffusion.ddim import sample_keys  # noqa: E402
from stylecrafter_jax.diffusion.schedule import schedule_from_config  # noqa: E402
from stylecrafter_jax.errors import ConfigError  # noqa: E402
from stylecrafter_jax.parallel.arrays import batch_sharding  # noqa: E402
from stylecrafter_jax.sampling.pipeline import SamplingPipeline  # noqa: E402
from stylecrafter_jax.sampling.settings import pixels_per_latent  # noqa: E402
from stylecrafter_jax.sampling.weights import random_params  # noqa: E402
from stylecrafter_jax.train.metrics import peak_flops_per_device  # noqa: E402

COLUMNS = ("part", "code", "dtype", "batch", "shape", "steps", "compile_s", "s_per_video", "ms_per_call",
           "forwards_per_s", "tflops", "mfu", "peak_gib", "xla_gib", "speedup", "note")
NUMERIC = COLUMNS[5:-1]
PARTS = ("video", "official", "unet", "vae", "stage1", "stage2")
SIZES = ("full", "tiny", "small")
PENDING = ["image-to-video (DynamiCrafter, VideoCrafter i2v): rows to add once those models are in the package"]
GIB = 2.0 ** 30
NA, SKIPPED = "n/a", "skipped"
STAGE_PARTS = {"stage1": "stage-1 step", "stage2": "stage-2 step"}
ORDER = ("video", "U-Net forward", "VAE decode", "stage-1 step", "stage-2 step")


class OutOfMemory(Exception):
    """A train step did not fit on the device (XLA's estimate or the allocator said so)."""


def is_out_of_memory(error: Exception) -> bool:
    """Whether a JAX error is the device running out of memory."""
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def inference_config(size: str) -> ml_collections.ConfigDict:
    """configs/inference.py at `size` with the init attention and ScaleEncoder shaped as the official code's."""
    if size not in SIZES:
        raise ConfigError(f"--size {size!r}: expected one of {SIZES}")
    config = get_config("medium" if size == "small" else size)
    model = config.model
    model.unet.init_attn_heads = 8  # official UNetModel: init_attn has 8 heads of num_head_channels
    model.unet.init_attn_head_dim = model.unet.num_head_channels
    model.adapter.scale_mid_dim = 32  # official ScaleEncoder hidden width
    if size == "small":
        factor = pixels_per_latent(model)
        config.sampling.update(frames=4, height=16 * factor, width=24 * factor)
    return config


def empty_row(part: str, code: str, dtype: str, batch: int, shape: str) -> dict[str, Any]:
    """A row with every numeric column n/a."""
    return dict(part=part, code=code, dtype=dtype, batch=batch, shape=shape, **{k: NA for k in NUMERIC}, note="")


def skipped_row(part: str, code: str, dtype: str, batch: int, shape: str, why: str) -> dict[str, Any]:
    """A row the budget (or a missing input) left out."""
    return {**empty_row(part, code, dtype, batch, shape), **{k: SKIPPED for k in NUMERIC}, "note": why}


def rates(flops: float, seconds: float, peak: float | None) -> dict[str, Any]:
    """TFLOP/s and MFU (n/a without a known peak) of `flops` done in `seconds`."""
    return dict(tflops=flops / seconds / 1e12, mfu=flops / seconds / peak if peak else NA)


def device_peak_gib() -> float | str:
    """Peak device bytes in use so far, GiB, or n/a where the backend keeps no such statistic."""
    stats = jax.devices()[0].memory_stats()
    return stats["peak_bytes_in_use"] / GIB if stats and "peak_bytes_in_use" in stats else NA


def program_gib(compiled: Any) -> float | str:
    """Arguments + outputs + temporaries of a compiled program (XLA memory analysis), GiB."""
    m = compiled.memory_analysis()
    if m is None:
        return NA
    return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes) / GIB


def compiled_flops(lowered: Any) -> float:
    """XLA's FLOP count of a lowered program."""
    cost = lowered.cost_analysis()
    return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(result, seconds) of fn() with its device work finished."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


class Budget:
    """Wall-clock seconds left of the run's budget."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        """Seconds left (negative once spent)."""
        return self.end - time.perf_counter()


def next_batch(batch: int, need_per_example: float | None, free_bytes: float | None, max_batch: int) -> int:
    """Twice `batch`, or the largest power-of-two multiple that the memory estimate says fits with 30% to spare."""
    candidate = 2 * batch
    if need_per_example and free_bytes:
        while 2 * candidate <= max_batch and 2 * candidate * need_per_example * 1.3 <= free_bytes:
            candidate *= 2
    return candidate


def search_batch(measure: Callable[[int], dict], *, max_batch: int, time_left: Callable[[], float],
                 free_bytes: Callable[[], float | None] = lambda: None) -> tuple[dict | None, list[dict], str]:
    """The largest power-of-two batch that `measure(batch)` runs (it raises OutOfMemory otherwise).

    Doubles from 1, skipping ahead where `next_batch` allows; after an out-of-memory batch above twice the
    largest that ran, tries the power of two between them. Each result needs "attempt_s" (its wall time)
    and may hold "need_bytes" (the new device memory it took by XLA's estimate). Stops at `max_batch`
    or when the next attempt (estimated at 1.5x the last) would not fit in `time_left()`. Returns
    (the largest result, every attempt, why the search stopped).
    """
    best, attempts, oom, batch, cost = None, [], None, 1, None
    while True:
        if batch > max_batch:
            return best, attempts, f"--train-max-batch {max_batch}"
        if cost is not None and 1.5 * cost > time_left():
            return best, attempts, f"time budget (next batch {batch})"
        free = free_bytes()
        start = time.perf_counter()
        try:
            result = measure(batch)
        except OutOfMemory as e:
            attempts.append(dict(batch=batch, status=f"out of memory: {str(e)[:200]}"))
            oom, cost = batch, time.perf_counter() - start
        else:
            attempts.append(dict(status="ran", **result))
            best, cost = result, result["attempt_s"]
        low = best["batch"] if best else 0
        if oom is None:
            per_example = best["need_bytes"] / low if best.get("need_bytes") else None
            batch = next_batch(batch, per_example, free, max_batch)
        elif low == 0 or 2 * low >= oom:
            return best, attempts, (f"out of memory at batch {oom}" if low else "out of memory at batch 1")
        else:
            batch = 2 ** ((int(math.log2(low)) + int(math.log2(oom))) // 2)


class AcceleratorRun:
    """The rows of one run: build the models once, measure each part, keep the table and the JSON current."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.budget = Budget(args.budget_s)
        self.started = time.perf_counter()
        self.config = inference_config(args.size)
        self.config.sampling.steps = args.steps
        device = jax.devices()[0]
        self.device = f"{device.platform} {device.device_kind} x{jax.device_count()}, jax {jax.__version__}"
        self.peak = peak_flops_per_device(device_kind=device.device_kind) if device.platform != "cpu" else None
        self.rows: list[dict] = []
        self.walls: dict[tuple[str, int], float] = {}
        self.compiles: list[float] = []
        self.setup: dict[str, float] = {}
        start = time.perf_counter()
        self.params = jax.device_put(random_params(self.config.model, 0))
        self.setup["random_params_s"] = time.perf_counter() - start
        self.pipes: dict[str, SamplingPipeline] = {}
        self.official_s: float | None = None
        self._forward_flops: float | None = None

    # ------------------------------------------------------------------ shared pieces
    def pipe(self, dtype: str) -> SamplingPipeline:
        """The sampling pipeline computing in `dtype` (kept, so its compiled conditioning and decode are reused)."""
        if dtype not in self.pipes:
            model = self.config.model.copy_and_resolve_references()
            model.dtype = dtype
            self.pipes[dtype] = SamplingPipeline(model, self.config.sampling, self.params, FixedTokenizer())
        return self.pipes[dtype]

    @property
    def video_shape(self) -> str:
        """frames x height x width of the videos, in pixels."""
        s = self.config.sampling
        return f"{s.frames}x{s.height}x{s.width}"

    def forward_flops(self) -> float:
        """FLOPs of one U-Net forward, batch 1, with style tokens, at the sampling latent shape."""
        if self._forward_flops is None:
            pipe = self.pipe(self.args.dtypes[0])
            full_video = self.args.size == "full" and pipe.latent_shape[:3] == (16, 40, 64)
            self._forward_flops = REFERENCE_VIDEO_FLOPS if full_video else unet_flops(pipe)
        return self._forward_flops

    def add(self, row: dict) -> None:
        """Keep a row, say it, and rewrite the JSON."""
        self.rows.append(row)
        print(f"[{time.perf_counter() - self.started:6.1f} s] " + " | ".join(format_value(row[c]) for c in COLUMNS),
              flush=True)
        if self.args.json:
            self.write_json()

    def estimate(self, dtype: str, batch: int) -> float | None:
        """Seconds a video row would take, from the rows measured so far (None before the first)."""
        same = [(b, s) for (d, b), s in self.walls.items() if d == dtype]
        if same:
            b, s = same[-1]
            return s * batch / b
        if self.walls:
            (_, b), s = list(self.walls.items())[-1]
            return 3.0 * s * batch / b  # another dtype: float32 is assumed 3x slower than bfloat16
        return None

    # ------------------------------------------------------------------ parts
    def video(self, dtype: str, batch: int) -> None:
        """The sampling pipeline end to end at one dtype and batch."""
        estimate = self.estimate(dtype, batch)
        if estimate is not None and estimate > self.budget.left():
            self.add(skipped_row("video", "jax", dtype, batch, self.video_shape,
                                 f"time budget: about {estimate:.0f} s needed, {self.budget.left():.0f} s left"))
            return
        start = time.perf_counter()
        pipe = self.pipe(dtype)
        prompts = ["A street performer playing the guitar."] * batch
        size = pipe.vision_tower.image_size
        styles = np.random.default_rng(0).uniform(-1, 1, (batch, 1, size, size, 3)).astype(np.float32)
        keys = sample_keys(0, list(range(batch)))
        _, condition_first_s = timed(lambda: pipe.condition(prompts, styles))
        cond, condition_s = timed(lambda: pipe.condition(prompts, styles))
        compile_start = time.perf_counter()
        lowered = jax.jit(pipe.sampler.sample, static_argnums=2).lower(cond, keys, pipe.latent_shape)
        compiled = lowered.compile()
        compile_s = time.perf_counter() - compile_start
        self.compiles.append(compile_s)
        latents, ddim_s = timed(lambda: compiled(cond, keys))
        _, decode_first_s = timed(lambda: pipe.decode(latents))
        _, decode_s = timed(lambda: pipe.decode(latents))
        forwards = 3 * batch * pipe.num_steps
        per_video = (condition_s + ddim_s + decode_s) / batch
        row = empty_row("video", "jax", dtype, batch, self.video_shape)
        row.update(steps=pipe.num_steps, compile_s=compile_s, s_per_video=per_video,
                   ms_per_call=1e3 * ddim_s / pipe.num_steps, forwards_per_s=forwards / ddim_s,
                   **rates(forwards * self.forward_flops(), ddim_s, self.peak), peak_gib=device_peak_gib(),
                   xla_gib=program_gib(compiled),
                   speedup=self.official_s / per_video if self.official_s else NA,
                   note="ms per call = per guided DDIM step",
                   condition_s=condition_s, ddim_s=ddim_s, decode_s=decode_s, condition_first_s=condition_first_s,
                   decode_first_s=decode_first_s, finite=bool(jnp.isfinite(latents).all()))
        self.walls[(dtype, batch)] = time.perf_counter() - start
        self.add(row)

    def official(self) -> None:
        """The official PyTorch sampler, fp32 and fp16 autocast, at the first batch, on this device."""
        batch, s = self.args.batches[0], self.config.sampling
        repo = self.args.official
        if not os.path.isdir(repo):
            for dtype in self.args.official_dtypes:
                self.add(skipped_row("video", "official torch", dtype, batch, self.video_shape,
                                     f"no checkout at {repo} (BENCHMARKS.md, 'Accelerator run')"))
            return
        import torch

        from benchmarks.official import OfficialVideoModel

        device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
        if self.args.torch_threads:
            torch.set_num_threads(self.args.torch_threads)
        model = OfficialVideoModel(repo, self.config.model, schedule_from_config(self.config.model), device)
        frames, height, width, _ = self.pipe(self.args.dtypes[0]).latent_shape
        shape = dict(batch=batch, frames=frames, height=height, width=width, text_scale=s.text_scale,
                     style_scale=s.style_scale, eta=s.eta)
        flops = self.forward_flops()
        for dtype in self.args.official_dtypes:
            fp16 = dtype == "fp16"
            warm = model.video(steps=1, fp16=fp16, **shape)  # cuDNN/cuBLAS set-up; times one step
            estimate = warm["condition_s"] + warm["ddim_s"] * s.steps + warm["decode_s"]
            if estimate > self.budget.left():
                self.add(skipped_row("video", "official torch", f"{dtype} autocast" if fp16 else dtype, batch,
                                     self.video_shape, f"time budget: about {estimate:.0f} s needed, "
                                                       f"{self.budget.left():.0f} s left"))
                continue
            r = model.video(steps=s.steps, fp16=fp16, **shape)
            forwards = 3 * batch * s.steps
            per_video = (r["condition_s"] + r["ddim_s"] + r["decode_s"]) / batch
            if dtype == "fp32":
                self.official_s = per_video
            row = empty_row("video", "official torch", f"{dtype} autocast" if fp16 else dtype, batch,
                            self.video_shape)
            row.update(steps=s.steps, s_per_video=per_video, ms_per_call=1e3 * r["ddim_s"] / s.steps,
                       forwards_per_s=forwards / r["ddim_s"], **rates(forwards * flops, r["ddim_s"], self.peak),
                       peak_gib=r["peak_bytes"] / GIB if r["peak_bytes"] else NA,
                       speedup=self.official_s / per_video if self.official_s else NA,
                       note=f"torch {torch.__version__} on {device}, {model.attention} attention; no CLIP towers",
                       condition_s=r["condition_s"], ddim_s=r["ddim_s"], decode_s=r["decode_s"], finite=r["finite"])
            self.add(row)
        model.release()

    def unet_forward(self, dtype: str) -> None:
        """One U-Net forward at batch 3 (the three guidance branches of a step), style tokens on."""
        pipe, model = self.pipe(dtype), self.config.model
        rng = np.random.default_rng(1)
        context = (3, model.unet.text_length + model.adapter.style_tokens, model.unet.context_dim)
        args = [jnp.asarray(rng.standard_normal(shape, np.float32)) for shape in
                ((3,) + pipe.latent_shape, context, (3, pipe.unet.num_cross_attention_layers))]
        t = jnp.full((3,), 981, jnp.int32)
        fn = lambda p, x, c, s: pipe.unet.apply({"params": p}, x, t, c, s)  # noqa: E731
        self.timed_call("U-Net forward", dtype, 3, "x".join(map(str, (3,) + pipe.latent_shape)), fn,
                        (pipe.params["unet"], *args), flops=3 * self.forward_flops(), forwards=3)

    def vae_decode(self, dtype: str) -> None:
        """The VAE decode of one video's frames in one call (bfloat16: decode_video's bfloat16 compute)."""
        pipe = self.pipe(dtype)
        latents = jnp.asarray(np.random.default_rng(2).standard_normal((1,) + pipe.latent_shape, np.float32))
        bf16 = dtype == "bfloat16"
        fn = lambda p, z: decode_video(pipe.vae, p, z, bfloat16=bf16)  # noqa: E731
        self.timed_call("VAE decode", dtype, 1, self.video_shape, fn, (pipe.params["vae"], latents))

    def timed_call(self, part: str, dtype: str, batch: int, shape: str, fn: Callable, args: tuple, *,
                   flops: float | None = None, forwards: int | None = None) -> None:
        """Compile `fn(*args)`, then time `--repeats` calls after a warm-up; one row."""
        if self.compiles and self.budget.left() < max(self.compiles):
            self.add(skipped_row(part, "jax", dtype, batch, shape, f"time budget: about {max(self.compiles):.0f} s "
                                                                   f"needed, {self.budget.left():.0f} s left"))
            return
        start = time.perf_counter()
        lowered = jax.jit(fn).lower(*args)
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start
        self.compiles.append(compile_s)
        flops = compiled_flops(lowered) if flops is None else flops
        timed(lambda: compiled(*args))
        _, seconds = timed(lambda: [compiled(*args) for _ in range(self.args.repeats)])
        seconds /= self.args.repeats
        row = empty_row(part, "jax", dtype, batch, shape)
        row.update(compile_s=compile_s, ms_per_call=1e3 * seconds, **rates(flops, seconds, self.peak),
                   peak_gib=device_peak_gib(), xla_gib=program_gib(compiled),
                   note="FLOPs: reference count" if forwards and self.args.size == "full" else "FLOPs: XLA")
        if forwards:
            row["forwards_per_s"] = forwards / seconds
        self.add(row)

    def train(self, stage: str) -> None:
        """One train step of `stage` at the largest per-device batch the search finds."""
        part = STAGE_PARTS[stage]
        if self.compiles and self.budget.left() < 3 * max(self.compiles):
            self.add(skipped_row(part, "jax", self.args.train_dtype, 0, "", f"time budget: about "
                                 f"{3 * max(self.compiles):.0f} s needed, {self.budget.left():.0f} s left"))
            return
        step = TrainStep(stage, self.args.size, self.args.train_dtype, self.args.train_steps)
        stats = jax.devices()[0].memory_stats()

        def free_bytes() -> float | None:
            now = jax.devices()[0].memory_stats()
            return now["bytes_limit"] - now["bytes_in_use"] if now and "bytes_limit" in now else None

        held = stats["bytes_in_use"] / GIB if stats and "bytes_in_use" in stats else None
        best, attempts, why = search_batch(step.measure, max_batch=self.args.train_max_batch,
                                           time_left=self.budget.left, free_bytes=free_bytes)
        self.compiles += [a["compile_s"] for a in attempts if "compile_s" in a]
        tried = ", ".join(f"{a['batch']}: {a['status'][:14]}" for a in attempts)
        if best is None:
            self.add({**skipped_row(part, "jax", self.args.train_dtype, 0, step.shape(1), f"{why}; tried {tried}"),
                      "attempts": attempts})
            return
        row = empty_row(part, "jax", self.args.train_dtype, best["batch"], step.shape(best["batch"]))
        row.update(compile_s=best["compile_s"], ms_per_call=1e3 * best["step_s"],
                   **rates(best["flops"], best["step_s"], self.peak), peak_gib=device_peak_gib(),
                   xla_gib=best["xla_gib"],
                   note=f"stopped by {why}; tried {tried}" + (f"; {held:.1f} GiB held before" if held else ""),
                   attempts=attempts, examples_per_s=best["batch"] / best["step_s"], setup_s=step.setup_s)
        self.add(row)
        step.release()

    # ------------------------------------------------------------------ output
    def table(self) -> list[dict]:
        """The rows in print order: part, then JAX before the official code, then dtype and batch."""
        return sorted(self.rows, key=lambda r: (ORDER.index(r["part"]), r["code"] != "jax", r["dtype"],
                                                r["batch"]))

    def write_json(self) -> None:
        """The run's JSON: device, settings, columns, rows (with their extra fields) and pending parts."""
        data = dict(device=self.device, size=self.args.size, steps=self.args.steps, budget_s=self.args.budget_s,
                    elapsed_s=time.perf_counter() - self.started, peak_flops=self.peak, setup=self.setup,
                    columns=list(COLUMNS), rows=self.table(), pending=PENDING)
        os.makedirs(os.path.dirname(os.path.abspath(self.args.json)), exist_ok=True)
        with open(self.args.json, "w") as f:
            json.dump(data, f, indent=1)

    def guarded(self, part: str, code: str, dtype: str, batch: int, measure: Callable[[], None]) -> None:
        """Run one part; an error becomes an "error" row (traceback on stderr), so the other parts still run."""
        try:
            measure()
        except Exception as e:  # noqa: BLE001 -- one run on a lent GPU must report every part it can
            traceback.print_exc()
            message = (str(e).splitlines() or [""])[0][:300]
            self.add({**empty_row(part, code, dtype, batch, ""), **{k: "error" for k in NUMERIC},
                      "note": f"{type(e).__name__}: {message}"})

    def run(self) -> list[dict]:
        """Every requested part, in priority order; returns the table."""
        parts, a = self.args.parts, self.args
        if "official" in parts:
            self.guarded("video", "official torch", "fp32", a.batches[0], self.official)
        if "video" in parts:
            for dtype in a.dtypes:
                self.guarded("video", "jax", dtype, a.batches[0], lambda d=dtype: self.video(d, a.batches[0]))
        for dtype in a.dtypes:
            if "unet" in parts:
                self.guarded("U-Net forward", "jax", dtype, 3, lambda d=dtype: self.unet_forward(d))
            if "vae" in parts:
                self.guarded("VAE decode", "jax", dtype, 1, lambda d=dtype: self.vae_decode(d))
        for stage in ("stage1", "stage2"):
            if stage in parts:
                self.guarded(STAGE_PARTS[stage], "jax", a.train_dtype, 0, lambda s=stage: self.train(s))
        if "video" in parts:
            for batch in a.batches[1:]:
                for dtype in a.dtypes:
                    self.guarded("video", "jax", dtype, batch, lambda d=dtype, b=batch: self.video(d, b))
        return self.table()


class TrainStep:
    """A stage's train state (random, on one device) and its compiled step at any batch size."""

    def __init__(self, stage: str, size: str, dtype: str, steps: int):
        from configs.stage1 import get_config as stage1_config
        from configs.stage2 import get_config as stage2_config
        from stylecrafter_jax.models.build import build_adapter, build_unet
        from stylecrafter_jax.parallel.mesh import create_mesh
        from stylecrafter_jax.train.state import create_state, stage_labels
        from stylecrafter_jax.train.step import LossModels, make_optimizer

        start = time.perf_counter()
        get = stage1_config if stage == "stage1" else stage2_config
        self.config = get(("medium" if size == "small" else size) + ",synthetic")
        self.config.model.dtype = dtype
        self.stage, self.steps = stage, steps
        self.mesh = create_mesh(self.config.mesh, jax.devices()[:1])
        self.labels = stage_labels(self.config)
        self.tx = make_optimizer(self.config.train, self.labels)
        self._create = lambda: create_state(self.config, self.tx, self.labels, self.mesh)
        self.state, self.shardings = self._create()
        m = self.config.model
        empty = np.zeros((1, m.unet.text_length, m.unet.context_dim), np.float32)
        self.models = LossModels(build_unet(m), build_adapter(m), schedule_from_config(m), empty)
        self.setup_s = time.perf_counter() - start

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        """Latents of a batch: stage 1 images (b, 1, h, w, 4), stage 2 videos (b, frames, h, w, 4)."""
        data, m = self.config.data, self.config.model
        f = pixels_per_latent(m)
        source = data.images if self.stage == "stage1" else data.videos
        frames = 1 if self.stage == "stage1" else source.num_frames
        return (batch, frames, source.size[0] // f, source.size[1] // f, m.unet.in_channels)

    def shape(self, batch: int) -> str:
        """The latents' shape, as the table shows it."""
        return "x".join(map(str, self.latent_shape(batch)))

    def batch(self, batch: int) -> dict[str, jax.Array]:
        """A synthetic encoded batch (random latents, text context and CLIP image tokens) on the device."""
        m = self.config.model
        rng = np.random.default_rng(batch)
        tokens = (m.image_encoder.image_size // m.image_encoder.patch_size) ** 2 + 1
        arrays = {"latents": self.latent_shape(batch), "text_context": (batch, m.unet.text_length, m.unet.context_dim),
                  "image_tokens": (batch, tokens, m.adapter.image_dim)}
        return {k: jax.device_put(rng.standard_normal(s, np.float32), batch_sharding(self.mesh))
                for k, s in arrays.items()}

    def measure(self, batch: int) -> dict[str, Any]:
        """Compile the step at `batch`, run it once, time `steps` more; OutOfMemory where it does not fit."""
        from stylecrafter_jax.parallel.arrays import abstract_arrays
        from stylecrafter_jax.parallel.init import activation_rules
        from stylecrafter_jax.train.step import compile_step, make_step_fn

        start = time.perf_counter()
        if self.state is None:  # a step that ran out of memory consumed the donated state
            self.state, self.shardings = self._create()
        try:
            arrays = self.batch(batch)
            mode = "skip" if self.stage == "stage1" else "full"
            fn = make_step_fn(self.models, self.tx, self.labels, self.config.train, mode)
            with activation_rules(self.mesh, self.config.mesh.rules):
                compiled, flops = compile_step(fn, self.state, abstract_arrays(arrays), state_shardings=self.shardings,
                                               batch_shardings=batch_sharding(self.mesh), log=lambda _: None)
            compile_s = time.perf_counter() - start
            memory = compiled.memory_analysis()
            need = None if memory is None else memory.temp_size_in_bytes + memory.output_size_in_bytes \
                - memory.alias_size_in_bytes
            stats = jax.devices()[0].memory_stats()
            if need is not None and stats and "bytes_limit" in stats and \
                    need > stats["bytes_limit"] - stats["bytes_in_use"]:
                raise OutOfMemory(f"XLA's estimate {need / GIB:.1f} GiB exceeds the free "
                                  f"{(stats['bytes_limit'] - stats['bytes_in_use']) / GIB:.1f} GiB")
            state, self.state = self.state, None
            state, metrics = compiled(state, arrays)
            jax.block_until_ready(metrics)
            step_start = time.perf_counter()
            for _ in range(self.steps):
                state, metrics = compiled(state, arrays)
            jax.block_until_ready(metrics)
            step_s = (time.perf_counter() - step_start) / self.steps
            self.state = state
        except Exception as e:  # noqa: BLE001 -- only the device's out-of-memory errors are caught
            if isinstance(e, OutOfMemory) or is_out_of_memory(e):
                raise OutOfMemory(str(e).splitlines()[0]) from e
            raise
        return dict(batch=batch, compile_s=compile_s, step_s=step_s, flops=flops, need_bytes=need,
                    xla_gib=program_gib(compiled), loss=float(metrics["loss"]),
                    attempt_s=time.perf_counter() - start)

    def release(self) -> None:
        """Drop the state so its device memory can go to the next part."""
        self.state = None


def format_value(value: Any) -> str:
    """A table cell: floats to 3 significant digits, everything else as it is."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def markdown(rows: Sequence[dict]) -> str:
    """The rows as one markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(format_value(r[c]).replace("|", "/") for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); bad values exit 2 with one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=SIZES)
    parser.add_argument("--json", default="")
    parser.add_argument("--official", default="third_party/StyleCrafter")
    parser.add_argument("--budget-s", type=float, default=480.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--official-dtypes", default="fp32,fp16")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--train-dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--train-max-batch", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=0)  # 0: torch's default (all cores)
    args = parser.parse_args(argv)
    lists = dict(batches=None, dtypes=("bfloat16", "float32"), official_dtypes=("fp32", "fp16"), parts=PARTS)
    for name, allowed in lists.items():
        values = [v for v in getattr(args, name).split(",") if v]
        if name == "batches":
            if not values or not all(v.isdigit() and int(v) > 0 for v in values):
                parser.error(f"--batches {getattr(args, name)!r}: expected positive integers, e.g. 1,4")
            values = [int(v) for v in values]
        elif not values or any(v not in allowed for v in values):
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)!r}: expected a comma list of {allowed}")
        setattr(args, name, values)
    if args.torch_threads < 0:
        parser.error(f"--torch-threads {args.torch_threads}: expected 0 (torch's default) or a thread count")
    for name in ("steps", "train_max_batch", "train_steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: expected an integer >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run, print the table, write the JSON; returns the rows."""
    args = parse_args(argv)
    run = AcceleratorRun(args)
    print(f"device: {run.device}; peak {run.peak / 1e12:.0f} TFLOP/s" if run.peak else f"device: {run.device}; "
          "no known peak (MFU n/a)", flush=True)
    rows = run.run()
    print("\n" + markdown(rows))
    print("\npending: " + "; ".join(PENDING))
    if args.json:
        run.write_json()
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
