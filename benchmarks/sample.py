"""Sampling speed: seconds per video and per image, U-Net forwards per second and model FLOP/s.

python -m benchmarks.sample [--size tiny|medium|full] [--modes video,image] [--steps 50] [--batch 1]
                            [--repeats 2] [--dtype float32|bfloat16] [--attention xla|cudnn]

Runs the sampling pipeline (`configs/inference.py:<size>[,image]`, official guidance and eta, random
weights) end to end: conditioning, guided DDIM (3 U-Net branches per step for video, 2 for images, one
batched call) and the batched VAE decode. The first call includes compilation; the steady-state
figures are the mean of `--repeats` further calls. Model FLOP/s counts U-Net forwards only: for the full
video model 10.923 TFLOP per forward (the reference's count of matmuls and convolutions, batch 1, 16 x
40 x 64 latents, with style), otherwise XLA's cost analysis of one forward (which also counts
elementwise work). The official figure is about 85 s per video and 5 s per image on an A100-40G.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs.inference import get_config
from stylecrafter_jax.diffusion.ddim import sample_keys
from stylecrafter_jax.sampling.pipeline import SamplingPipeline
from stylecrafter_jax.sampling.weights import random_params

REFERENCE_VIDEO_FLOPS = 10.923e12  # one full-size forward at 16x40x64 with style (unet-vae-clip-diffusion.md §7.2)
OFFICIAL_SECONDS = {"video": 85.0, "image": 5.0}  # README, A100-40G, fp32, 50 steps


class FixedTokenizer:
    """Stand-in for the CLIP tokenizer where it cannot load (token ids do not change the timing)."""

    def __call__(self, texts):
        ids = np.zeros((len(texts), 77), np.int32)
        ids[:, :3] = (49406, 320, 49407)
        return ids


def tokenizer():
    """The real CLIP tokenizer, or the stand-in (say which)."""
    try:
        from stylecrafter_jax.conditioning.tokenizer import load_tokenizer

        return load_tokenizer(), "CLIP BPE"
    except Exception as e:  # noqa: BLE001 -- a benchmark runs on machines without the vocab file
        return FixedTokenizer(), f"fixed ids ({type(e).__name__})"


def unet_flops(pipe: SamplingPipeline) -> float:
    """XLA's cost analysis of one U-Net forward, batch 1, at the sample's latent shape with style tokens."""
    model = pipe.model
    f32 = jnp.float32
    context = (1, model.unet.text_length + model.adapter.style_tokens, model.unet.context_dim)
    args = (jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), pipe.params["unet"]),
            jax.ShapeDtypeStruct((1,) + pipe.latent_shape, f32), jax.ShapeDtypeStruct((1,), jnp.int32),
            jax.ShapeDtypeStruct(context, f32),
            jax.ShapeDtypeStruct((1, pipe.unet.num_cross_attention_layers), f32))
    lowered = jax.jit(pipe._model_fn).lower(*args)
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])


def bench(size: str, mode: str, steps: int, batch: int, repeats: int, dtype: str, attention: str) -> dict:
    """Timings of one mode; every figure per sample unless named per batch."""
    config = get_config(size + (",image" if mode == "image" else ""))
    config.sampling.steps = steps
    config.model.dtype, config.model.attention = dtype, attention
    start = time.perf_counter()
    params = random_params(config.model, 0)
    tok, tok_kind = tokenizer()
    pipe = SamplingPipeline(config.model, config.sampling, params, tok)
    setup = time.perf_counter() - start
    prompts = ["A street performer playing the guitar."] * batch
    styles = np.random.default_rng(0).uniform(-1, 1, (batch, 1, 512, 512, 3)).astype(np.float32)
    keys = sample_keys(0, list(range(batch)))

    start = time.perf_counter()
    pipe(prompts, styles, list(range(batch)), 0)
    first = time.perf_counter() - start
    phases = np.zeros(3)
    for _ in range(repeats):
        marks = [time.perf_counter()]
        cond = jax.block_until_ready(pipe.condition(prompts, styles))
        marks.append(time.perf_counter())
        latents = jax.block_until_ready(pipe.sampler.sample(cond, keys, pipe.latent_shape))
        marks.append(time.perf_counter())
        pipe.decode(latents)
        marks.append(time.perf_counter())
        phases += np.diff(marks)
    condition, ddim, decode = phases / repeats
    branches = 3 if mode == "video" else 2
    forwards = branches * batch * pipe.num_steps
    full_video = size == "full" and mode == "video" and pipe.latent_shape[:3] == (16, 40, 64)
    flops = REFERENCE_VIDEO_FLOPS if full_video else unet_flops(pipe)
    total = condition + ddim + decode
    return dict(size=size, mode=mode, shape="x".join(map(str, (config.sampling.frames, config.sampling.height,
                                                               config.sampling.width))),
                batch=batch, steps=pipe.num_steps, dtype=dtype, tokenizer=tok_kind, setup_s=setup,
                first_call_s=first, seconds_per_sample=total / batch, condition_s=condition, ddim_s=ddim,
                decode_s=decode, forwards_per_s=forwards / ddim, flops_per_forward=flops,
                flops_source="reference" if full_video else "XLA cost analysis",
                model_flops_per_s=forwards * flops / ddim, official_s=OFFICIAL_SECONDS[mode])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny", choices=("tiny", "medium", "full"))
    parser.add_argument("--modes", default="video,image")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--attention", default="xla")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"device: {device.platform} {device.device_kind} x{jax.device_count()}, jax {jax.__version__}")
    rows = [bench(args.size, mode, args.steps, args.batch, args.repeats, args.dtype, args.attention)
            for mode in args.modes.split(",")]
    print(f"tokenizer: {rows[0]['tokenizer']}; setup (random weights, pipeline): "
          + ", ".join(f"{r['mode']} {r['setup_s']:.1f} s" for r in rows))
    print("\n| size | mode | frames x h x w | batch | steps | dtype | first call (compile) s | s per sample | "
          "conditioning s | DDIM s | decode s | U-Net forwards/s | FLOP per forward | model FLOP/s | official s |")
    print("|" + "---|" * 15)
    for r in rows:
        print(f"| {r['size']} | {r['mode']} | {r['shape']} | {r['batch']} | {r['steps']} | {r['dtype']} | "
              f"{r['first_call_s']:.1f} | {r['seconds_per_sample']:.3f} | {r['condition_s']:.3f} | {r['ddim_s']:.3f} | "
              f"{r['decode_s']:.3f} | {r['forwards_per_s']:.1f} | {r['flops_per_forward']:.3g} ({r['flops_source']}) | "
              f"{r['model_flops_per_s']:.3g} | {r['official_s']:.0f} (A100-40G, full) |")


if __name__ == "__main__":
    main()
