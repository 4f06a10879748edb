"""Preemption across hosts on CPU: two processes (4 devices each, gloo) train the slimmed tiny config, only
process 1 gets SIGTERM; both stop at the same step, save that step and exit 0; one process resumes from it."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.parallel.test_distributed import free_port
from tests.parallel.test_train_multiprocess import COMMON, REPO, _env, _flags

pytestmark = pytest.mark.slow  # minutes on 2 cores: pytest -m slow tests

STEPS = 100  # far more than the run reaches: it only stops on the preemption
STOP = re.compile(r"stopping at step (\d+) on preemption; checkpoint saved")


def _train(overrides, devices, cache, log_path, **popen):
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stylecrafter_jax.train", "--config=configs/stage1.py:tiny,synthetic",
             *_flags(overrides)], cwd=REPO, env={**_env(devices, cache), "PYTHONUNBUFFERED": "1"}, stdout=log,
            stderr=subprocess.STDOUT, text=True, **popen)


def _wait_for(path, text, procs, timeout_s):
    """Block until `text` is in the file at `path`; fail if a process ends first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text():
        ended = [p.returncode for p in procs if p.poll() is not None]
        assert not ended and time.monotonic() < deadline, f"no {text!r} in {path}: {path.read_text()[-3000:]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def preempted(tmp_path_factory):
    root = tmp_path_factory.mktemp("preemption")
    workdir = root / "run"
    address = f"127.0.0.1:{free_port()}"
    logs = [root / f"process_{pid}.log" for pid in (0, 1)]
    overrides = {**COMMON, "workdir": workdir, "train.steps": STEPS, "train.checkpoint_every": 1000,
                 "mesh.distributed.coordinator_address": address, "mesh.distributed.num_processes": 2,
                 "mesh.distributed.initialization_timeout_s": 120}
    procs = [_train({**overrides, "mesh.distributed.process_id": pid}, 4, False, logs[pid]) for pid in (0, 1)]
    try:
        _wait_for(logs[1], "step=2 ", procs, timeout_s=1800)  # inside the loop: the SIGTERM handler is set
        procs[1].send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    texts = [path.read_text() for path in logs]
    checkpoints = sorted(int(name) for name in os.listdir(workdir / "checkpoints") if name.isdigit())
    stops = [[int(s) for s in STOP.findall(text)] for text in texts]
    with open(workdir / "metrics.jsonl") as f:
        logged = [json.loads(line)["step"] for line in f]
    resume_log = root / "resume.log"
    resumed = None
    if all(len(s) == 1 for s in stops):
        resume = _train({**COMMON, "workdir": workdir, "train.steps": stops[0][0] + 1, "mesh.data": 2,
                         "mesh.fsdp": 4}, 8, True, resume_log)
        try:
            resumed = resume.wait(timeout=900)
        finally:
            if resume.poll() is None:
                resume.kill()
    return dict(codes=codes, texts=texts, stops=stops, checkpoints=checkpoints, workdir=workdir, logged=logged,
                resumed=resumed, resume_log=resume_log.read_text() if resume_log.exists() else "")


def test_both_processes_stop_at_the_same_step_and_exit_cleanly(preempted):
    for code, text in zip(preempted["codes"], preempted["texts"]):
        assert code == 0, text[-4000:]
    [first], [second] = preempted["stops"]
    assert first == second and 2 <= first < STEPS
    # The primary, which got no signal, logged one metrics row per step up to the agreed stop.
    assert preempted["logged"] == list(range(1, first + 1))


def test_the_agreed_step_is_the_newest_checkpoint(preempted):
    [step], _ = preempted["stops"]
    assert preempted["checkpoints"][-1] == step  # (orbax also saves the first step of a run)


def test_the_run_resumes_from_the_agreed_step(preempted):
    [step], _ = preempted["stops"]
    assert preempted["resumed"] == 0, preempted["resume_log"][-4000:]
    assert f"resumed from step {step}" in preempted["resume_log"]
    with open(preempted["workdir"] / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f][-2:] == [step, step + 1]
