"""One process of test_sample_multiprocess.py: the tiny sampling pipeline on a mesh over every process.

Usage: python sample_worker.py SETTINGS_JSON OUT_NPZ (4 CPU devices per process via XLA_FLAGS); writes the
whole latents and pixels of one batch, gathered from every process. `sample(mesh)` is also the test's
one-process reference.
"""

import json
import sys

import numpy as np

PROMPTS = ["a red circle", "two blue squares", "a green line"]
INDICES = [4, 0, 9]  # the noise of each sample: fold_in(SEED, index)
SEED = 7


def sample(mesh):
    """(latents, uint8 pixels, the padded global latents) of PROMPTS with the tiny model's seed-0 random weights
    on `mesh` (None: one device)."""
    from jax.experimental import multihost_utils

    from configs.inference import get_config
    from stylecrafter_jax.conditioning.tokenizer import load_tokenizer
    from stylecrafter_jax.sampling.pipeline import SamplingPipeline
    from stylecrafter_jax.sampling.weights import random_params

    config = get_config("tiny")
    config.sampling.steps = 2
    config.sampling.height = config.sampling.width = 32
    pipeline = SamplingPipeline(config.model, config.sampling, random_params(config.model, seed=0), load_tokenizer(),
                                mesh=mesh)
    styles = np.random.default_rng(3).uniform(-1, 1, (len(PROMPTS), 2, 64, 64, 3)).astype(np.float32)
    latents, count = pipeline._padded_latents(PROMPTS, styles, INDICES, SEED)
    pixels = pipeline(PROMPTS, styles, INDICES, SEED)
    return np.asarray(multihost_utils.process_allgather(latents, tiled=True))[:count], pixels, latents


if __name__ == "__main__":
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from stylecrafter_jax.parallel.distributed import maybe_initialize

    maybe_initialize(json.loads(sys.argv[1]))
    from stylecrafter_jax.parallel.defaults import mesh_config
    from stylecrafter_jax.parallel.arrays import batch_sharding
    from stylecrafter_jax.parallel.mesh import create_mesh, describe_mesh

    mesh = create_mesh(mesh_config())
    latents, pixels, padded = sample(mesh)
    np.savez(sys.argv[2], latents=latents, pixels=pixels)
    print(json.dumps({"mesh": describe_mesh(mesh), "process": [jax.process_index(), jax.process_count()],
                      "padded_shape": list(padded.shape),
                      "split_over_batch_axes": padded.sharding.is_equivalent_to(batch_sharding(mesh), padded.ndim),
                      "local_rows": sorted(shard.index[0].start for shard in padded.addressable_shards)}), flush=True)
