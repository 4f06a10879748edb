"""Subprocess of test_buckets.py (the caller sets the emulator's environment).

`build SRC OUT` builds a tiny image dataset; `train WORKDIR DATA_DIR STEPS [PREEMPT_AT]` trains the toy's
pixel base model on it (the shapes of tests/train/test_loop.py, so the compiled step may come from the
persistent cache); `load EXPORT` reads the export back as `sample` and `--config.pretrained` read it;
`sample OUT` writes one video sample as `sample --out` does.
"""

import os
import signal
import sys

import jax
import numpy as np

from configs.stage1 import get_config as stage1_config
from configs.toy import STYLE_SIZE, get_config
from stylecrafter_jax.checkpoints.pretrained import load_pretrained, read_manifest
from stylecrafter_jax.data.build.dataset import build_dataset
from stylecrafter_jax.data.build.options import BuildOptions
from stylecrafter_jax.errors import DataError
from stylecrafter_jax.sampling.inputs import SampleJob, SampleRequest
from stylecrafter_jax.sampling.io import SampleWriter
from stylecrafter_jax.toy.pipeline import phase_config
from stylecrafter_jax.train.loop import run


def train_config(workdir, data_dir, steps):
    config = phase_config(get_config("quick"), "base")
    with config.unlocked():
        config.workdir = workdir
        data = stage1_config("tiny").data
        data.images.update(data_dir=data_dir, batch_size=8, size=(16, 16), style_resize=32, style_crop=STYLE_SIZE)
        data.read_threads, data.prefetch = 1, 1
        config.data = data
        config.train.update(steps=steps, log_every=1, checkpoint_every=2, async_checkpoint=False, warmup_steps=0,
                            schedule="constant")
    return config


def main(command, *args):
    if command == "build":
        source, out = args
        build_dataset("images", source, out, options=BuildOptions(image_min_side=16, image_max_side=64,
                                                                  image_format="png"))
        return
    if command == "load":  # the export read back, as `sample` and `--config.pretrained` read it
        [export] = args
        unet = load_pretrained(export, ["unet"])["unet"]
        print(f"LOADED unet leaves={len(jax.tree.leaves(unet))} step={read_manifest(export)['step']}")
        return
    if command == "sample":  # what `sample --out gs://...` and periodic samples write
        [out] = args
        job = SampleJob(SampleRequest(0, "a cat", ("cat.png",), False), sample=0, index=0)
        writer = SampleWriter(out, "video")
        writer.check_free([job], 4, overwrite=False)
        pixels = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
        print("WROTE " + " ".join(writer.write(job, pixels, np.zeros((1, 28, 28, 3), np.float32))))
        try:
            writer.check_free([job], 4, overwrite=False)
        except DataError as error:
            print(f"REFUSED {error}")
        return
    workdir, data_dir, steps, *preempt_at = args

    def log(line):
        print(line, flush=True)
        if preempt_at and line.startswith(f"step={preempt_at[0]} "):
            os.kill(os.getpid(), signal.SIGTERM)

    result = run(train_config(workdir, data_dir, int(steps)), log=log)
    print(f"RESULT step={result.step} preempted={result.preempted}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
