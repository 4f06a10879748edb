"""Tests for parallel/distributed.py: when and how to initialize, a real 2-process CPU run over gloo,
and a clear error, not a hang, when the coordinator cannot be reached."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.parallel.defaults import distributed_config, mesh_config
from stylecrafter_jax.parallel.distributed import (
    DistributedArgs, StopAgreement, is_primary, maybe_initialize, process_tag, resolve_distributed_args,
    wait_for_coordinator)
from stylecrafter_jax.parallel.mesh import create_mesh

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("two_process_worker.py")


def settings(**values):
    config = distributed_config()
    config.update(values)
    return config


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_single_host_does_not_initialize():
    assert resolve_distributed_args(settings(), {}) is None
    assert resolve_distributed_args(settings(initialize="never"), {"JAX_COORDINATOR_ADDRESS": "h:1"}) is None
    assert resolve_distributed_args(settings(), {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert maybe_initialize(settings(), {}) is False


def test_config_values_are_used_and_disable_cluster_detection():
    args = resolve_distributed_args(
        settings(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3, local_device_ids="0,1",
                 initialization_timeout_s=30), {"SLURM_NTASKS": "8", "SLURM_PROCID": "5"})
    assert args == DistributedArgs("10.0.0.1:1234", 4, 3, (0, 1), 30, "config")
    assert args.explicit


def test_slurm_environment_gives_count_and_id():
    environ = {"SLURM_NTASKS": "16", "SLURM_PROCID": "7", "JAX_COORDINATOR_ADDRESS": "node001:8476"}
    args = resolve_distributed_args(settings(), environ)
    assert args == DistributedArgs("node001:8476", 16, 7, None, 300, "slurm")


def test_jax_environment_variables():
    environ = {"JAX_COORDINATOR_ADDRESS": "h:9", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0",
               "JAX_LOCAL_DEVICE_IDS": "2,3"}
    assert resolve_distributed_args(settings(), environ) == DistributedArgs("h:9", 2, 0, (2, 3), 300, "environment")


def test_tpu_pod_and_always_leave_detection_to_jax():
    tpu = resolve_distributed_args(settings(), {"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"})
    assert tpu == DistributedArgs(None, None, None, None, 300, "auto-detect") and not tpu.explicit
    assert resolve_distributed_args(settings(), {"MEGASCALE_COORDINATOR_ADDRESS": "c:8080"}) is not None
    assert resolve_distributed_args(settings(), {"TPU_WORKER_HOSTNAMES": "t0"}) is None
    assert resolve_distributed_args(settings(initialize="always"), {}).source == "auto-detect"


@pytest.mark.parametrize("values, environ, message", [
    ({"initialize": "sometimes"}, {}, r"mesh.distributed.initialize='sometimes': expected one of"),
    ({}, {"SLURM_NTASKS": "4", "SLURM_PROCID": "1"}, r"coordinator_address is unset .* run of 4 processes"),
    ({"num_processes": 2, "process_id": 1}, {}, r"coordinator_address is unset"),
    ({"coordinator_address": "h:1"}, {}, r"coordinator_address='h:1' needs num_processes and process_id"),
    ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 2}, {},
     r"process_id=2 is not in \[0, num_processes=2\)"),
    ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 0, "local_device_ids": "0,x"}, {},
     r"local_device_ids='0,x': expected comma-separated device ids"),
    ({"initialization_timeout_s": 0, "initialize": "always"}, {}, r"initialization_timeout_s=0"),
    ({}, {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
     r"JAX_NUM_PROCESSES='two': expected an integer"),
])
def test_bad_settings_are_config_errors(values, environ, message):
    with pytest.raises(ConfigError, match=message):
        resolve_distributed_args(settings(**values), environ)


def test_wait_for_coordinator_returns_once_it_listens():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        wait_for_coordinator(f"127.0.0.1:{server.getsockname()[1]}", timeout_s=2)


def test_unreachable_coordinator_is_a_clear_error_not_a_hang():
    port = free_port()
    with pytest.raises(ConfigError, match=rf"cannot reach the JAX coordinator at "
                                          rf"mesh.distributed.coordinator_address='127.0.0.1:{port}' within 1 s"):
        maybe_initialize(settings(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=1,
                                  initialization_timeout_s=1), {})
    assert not jax.distributed.is_initialized()
    with pytest.raises(ConfigError, match=r"coordinator_address='nocolon': expected HOST:PORT"):
        wait_for_coordinator("nocolon", timeout_s=1)


def run_workers(commands, timeout_s=180):
    """Start the processes together; return their (returncode, stdout, stderr), killing all on timeout."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", PYTHONPATH=str(REPO),
               JAX_PLATFORMS="cpu", JAX_ENABLE_COMPILATION_CACHE="false")  # why: test_train_multiprocess._env
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in commands]
    return wait_all(procs, timeout_s)


def wait_all(procs, timeout_s):
    """(returncode, stdout, stderr) of each process; all are killed if one runs past `timeout_s`."""
    try:
        outputs = [proc.communicate(timeout=timeout_s) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return [(proc.returncode, out, err) for proc, (out, err) in zip(procs, outputs)]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("two_process") / "ckpt"
    address = f"127.0.0.1:{free_port()}"
    commands = [[sys.executable, str(WORKER), json.dumps(
        {"coordinator_address": address, "num_processes": 2, "process_id": pid, "initialization_timeout_s": 60}),
        str(ckpt)] for pid in (0, 1)]
    results = run_workers(commands)
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results], ckpt


def test_two_processes_form_one_runtime(two_processes):
    results, _ = two_processes
    for pid, result in enumerate(results):
        assert result["initialized"] is True
        assert result["process"] == [pid, 2]
        assert result["primary"] is (pid == 0)
        assert result["devices"] == [4, 8]


def test_dcn_axis_spans_processes(two_processes):
    results, _ = two_processes
    for result in results:
        assert result["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
        assert result["data_axis_processes"] == [[0], [1]]  # each data row of the mesh is one process


def test_global_batch_and_psum_across_processes(two_processes):
    results, _ = two_processes
    full = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    for pid, result in enumerate(results):
        assert result["data_shard"] == [pid, 2] and result["rows"] == 4
        assert result["total"] == float(full.sum())
        np.testing.assert_array_equal(result["column_sums"], full.sum(axis=0))
        assert result["tensor_mesh_data_shard"] == [0, 1]  # tensor across hosts: both read the same rows


def test_a_stop_flag_of_one_process_stops_both_at_the_same_call(two_processes):
    results, _ = two_processes
    for result in results:
        assert result["stops"] == [False, False, False, True, False]


def test_two_process_checkpoint_restores_in_one_process_on_another_mesh(two_processes):
    _, ckpt = two_processes
    mesh = create_mesh(mesh_config(2, 2, 2))
    targets = {"weights": jax.ShapeDtypeStruct((16, 8), np.float32, sharding=NamedSharding(mesh, P("fsdp", "tensor"))),
               "batch": jax.ShapeDtypeStruct((8, 3), np.float32, sharding=NamedSharding(mesh, P()))}
    with ocp.CheckpointManager(ckpt) as manager:
        restored = manager.restore(1, args=ocp.args.StandardRestore(targets))
    np.testing.assert_array_equal(np.asarray(restored["weights"]), np.arange(16 * 8).reshape(16, 8))
    np.testing.assert_array_equal(np.asarray(restored["batch"]), np.arange(8 * 3).reshape(8, 3))
    assert restored["weights"].sharding.spec == P("fsdp", "tensor")


def test_coordinator_waiting_for_absent_peers_exits_instead_of_hanging(tmp_path):
    """Process 0 of 2 alone: JAX gives up after the timeout and the process ends with an error."""
    script = ("import logging, sys; logging.basicConfig(level=logging.INFO)\n"
              "from stylecrafter_jax.parallel.distributed import maybe_initialize\n"
              f"maybe_initialize({{'coordinator_address': '127.0.0.1:{free_port()}', 'num_processes': 2, "
              "'process_id': 0, 'initialization_timeout_s': 2})\n")
    [(rc, _, err)] = run_workers([[sys.executable, "-c", script]], timeout_s=120)
    assert rc != 0
    assert "waiting up to 2 s for every process to connect" in err
    assert "DEADLINE_EXCEEDED" in err


def test_single_process_helpers():
    assert is_primary()
    assert process_tag() == "[host 0/1]"


def test_always_on_one_process_leaves_everything_to_jax():
    args = resolve_distributed_args(settings(initialize="always", num_processes=1), {})
    assert args == DistributedArgs(None, 1, None, None, 300, "auto-detect")


def test_stop_agreement_on_one_process_is_the_local_flag():
    agree = StopAgreement()
    assert [agree(flag) for flag in (False, True, False)] == [False, True, False]
    with pytest.raises(ConfigError, match=r"timeout_s=0: expected a positive number of seconds"):
        StopAgreement(timeout_s=0)
