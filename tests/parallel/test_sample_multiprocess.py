"""Sampling over two processes on CPU (4 devices each, gloo): both get the same samples as one process."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.parallel.sample_worker import sample
from tests.parallel.test_distributed import free_port, run_workers

pytestmark = pytest.mark.slow  # minutes on 2 cores: pytest -m slow tests

WORKER = Path(__file__).with_name("sample_worker.py")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample_two_processes")
    address = f"127.0.0.1:{free_port()}"
    commands = [[sys.executable, str(WORKER), json.dumps(
        {"coordinator_address": address, "num_processes": 2, "process_id": pid, "initialization_timeout_s": 120}),
        str(root / f"process_{pid}.npz")] for pid in (0, 1)]
    results = run_workers(commands, timeout_s=900)
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    return ([json.loads(out.strip().splitlines()[-1]) for _, out, _ in results],
            [np.load(root / f"process_{pid}.npz") for pid in (0, 1)])


def test_the_batch_is_split_over_both_processes(two_processes):
    reports, _ = two_processes
    for pid, report in enumerate(reports):
        assert report["process"] == [pid, 2]
        assert report["mesh"] == "mesh(data=1, fsdp=8, tensor=1) over 8 devices in 2 process(es)"
        # Three samples padded to the 8 batch shards, one row per device: rows 0-3 on process 0, 4-7 on 1.
        assert report["padded_shape"] == [8, 4, 4, 4, 4] and report["split_over_batch_axes"]
        assert report["local_rows"] == list(range(4 * pid, 4 * pid + 4))


def test_two_processes_sample_what_one_process_samples(two_processes):
    _, outputs = two_processes
    latents, pixels, _ = sample(None)  # one process, one device
    # Both processes hold the whole result, bit for bit the same.
    np.testing.assert_array_equal(outputs[0]["latents"], outputs[1]["latents"])
    np.testing.assert_array_equal(outputs[0]["pixels"], outputs[1]["pixels"])
    for output in outputs:
        assert output["latents"].shape == latents.shape == (3, 4, 4, 4, 4)
        # The noise is fold_in(seed, index) of each sample, the same numbers on any layout; the U-Net's float
        # sums run in another order on 8 shards than on one device, so the latents agree to float tolerance.
        np.testing.assert_allclose(output["latents"], latents, rtol=0, atol=1e-4)
        assert np.abs(output["pixels"].astype(int) - pixels).max() <= 1
        assert (output["pixels"] == pixels).mean() > 0.99
    assert np.abs(latents[0] - latents[1]).mean() > 0.1  # the samples differ from each other
