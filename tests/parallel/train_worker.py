"""One process of test_train_multiprocess.py: trainer runs (`loop.run`) given as JSON, one after another.

Usage: python train_worker.py RUNS_JSON, RUNS_JSON a list of {"overrides": {dotted key: value},
"as_if_processes": [P at step 1, P at step 2, ...] (optional), "after": PATH (optional: start once this
file exists)}. Each run writes its workdir as the trainer does, plus `trained.npz` (the trainable leaves
at the end, by "/"-joined path).

`as_if_processes` gives the run, in this one process, the global batches that a run with that many
processes at each step reads: process p of P loads global examples p, p + P, ... of the example order,
and the global batch is process 0's rows, then process 1's, ... (`make_global_batch`). It is how a
one-process reference sees the same global batches as a multi-process run.
"""

import json
import os
import sys
import time

import jax
import numpy as np
from flax import traverse_util

from configs.stage1 import get_config
from stylecrafter_jax.data.iterators import make_iterator
from stylecrafter_jax.train import loop
from stylecrafter_jax.train.state import trainable


class AsIfProcesses:
    """Global batches of a run with `counts[i]` processes at step i (the last count for later steps)."""

    def __init__(self, data, counts, tokenizer=None):
        self.data, self.counts, self.steps, self.parts, self.state = data, counts, 0, [], None
        self.tokenizer = tokenizer

    def __next__(self):
        count = self.counts[min(self.steps, len(self.counts) - 1)]
        if len(self.parts) != count:
            self.parts = [make_iterator(self.data, process_index=p, process_count=count, tokenizer=self.tokenizer)
                          for p in range(count)]
            for part in self.parts:
                if self.state is not None:
                    part.set_state(self.state)
        batches = [next(part) for part in self.parts]
        self.steps += 1
        self.state = self.parts[0].get_state()
        return {key: np.concatenate([np.asarray(b[key]) for b in batches]) for key in batches[0]}

    def get_state(self):
        return self.state

    def set_state(self, state):
        self.state, self.parts = state, []


def train(overrides, as_if_processes=None):
    config = get_config("tiny,synthetic")
    with config.unlocked():
        for key, value in overrides.items():
            *parents, leaf = key.split(".")
            node = config
            for parent in parents:
                node = node[parent]
            node[leaf] = tuple(value) if isinstance(value, list) else value  # JSON has no tuples
    if as_if_processes:
        loop.make_iterator = lambda data, tokenizer=None, **_: AsIfProcesses(data, as_if_processes, tokenizer)
    try:
        result = loop.run(config, log=lambda line: print(line, flush=True))
    finally:
        loop.make_iterator = make_iterator
    flat = traverse_util.flatten_dict(jax.device_get(trainable(result.state.params, result.labels)), sep="/")
    np.savez(os.path.join(config.workdir, "trained.npz"), **flat)


def wait_for(path, timeout_s=900):
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.5)


if __name__ == "__main__":
    for run in json.loads(sys.argv[1]):
        if "after" in run:
            wait_for(run["after"])
        train(run["overrides"], run.get("as_if_processes"))
