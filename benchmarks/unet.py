"""U-Net compile and forward time at the tiny and medium sizes (and the full model at 16x40x64 on a GPU).

python -m benchmarks.unet [--sizes tiny,medium] [--repeats 5] [--dtype float32|bfloat16]
Prints one table row per size: parameters, XLA FLOPs of one forward, compile seconds, forward ms,
achieved TFLOP/s.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylecrafter_jax.models.build import build_unet, example_inputs, param_shapes
from stylecrafter_jax.models.sizes import model_config


def benchmark(size: str, repeats: int, dtype: str, batch: int) -> dict:
    """Compile and time one jitted U-Net forward (style tokens on) at the size's latent shape."""
    model = model_config(size)
    model.dtype = dtype
    unet = build_unet(model)
    inputs = example_inputs(model, batch=batch)
    shapes = nn.unbox(param_shapes(model))["unet"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(0.02 * rng.standard_normal(s.shape, np.float32)), shapes)
    args = [jnp.asarray(rng.standard_normal(inputs[k].shape, np.float32)) for k in ("x", "context")]
    t = jnp.full((batch,), 981, jnp.int32)
    fn = jax.jit(lambda p, x, c: unet.apply({"params": p}, x, t, c))
    start = time.perf_counter()
    lowered = fn.lower(params, *args)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    flops = float(lowered.cost_analysis()["flops"])
    compiled(params, *args).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = compiled(params, *args)
    out.block_until_ready()
    forward_s = (time.perf_counter() - start) / repeats
    count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    return {"size": size, "shape": tuple(inputs["x"].shape), "params": count, "gflop": flops / 1e9,
            "compile_s": compile_s, "forward_ms": forward_s * 1e3, "tflops": flops / forward_s / 1e12}


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,medium")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    sizes = args.sizes.split(",") + (["full"] if jax.default_backend() == "gpu" and "full" not in args.sizes else [])
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), dtype {args.dtype}")
    print(f"{'size':<8}{'latent (b,t,h,w,c)':<22}{'params':>14}{'GFLOP':>10}{'compile s':>11}{'fwd ms':>10}"
          f"{'TFLOP/s':>9}")
    for size in sizes:
        r = benchmark(size, args.repeats, args.dtype, args.batch)
        print(f"{r['size']:<8}{str(r['shape']):<22}{r['params']:>14,}{r['gflop']:>10.2f}{r['compile_s']:>11.1f}"
              f"{r['forward_ms']:>10.1f}{r['tflops']:>9.3f}")


if __name__ == "__main__":
    main()
