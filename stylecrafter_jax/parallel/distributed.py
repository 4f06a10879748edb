"""Multi-process start-up (`jax.distributed.initialize` when the config or the environment asks) and decisions
every process takes together (`StopAgreement`)."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from stylecrafter_jax.errors import ConfigError, StyleCrafterError

logger = logging.getLogger(__name__)

MODES = ("auto", "always", "never")
AGREEMENT_TIMEOUT_S = 1800.0
"""How long a process waits for the others to reach the same stop check before it gives up."""


@dataclasses.dataclass(frozen=True)
class DistributedArgs:
    """The arguments for `jax.distributed.initialize`; None means "let JAX detect it"."""

    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None
    local_device_ids: tuple[int, ...] | None
    timeout_s: int
    source: str

    @property
    def explicit(self) -> bool:
        """True when address, process count and id are all known, so JAX's cluster detection is off."""
        return None not in (self.coordinator_address, self.num_processes, self.process_id)


def _int_or_none(value: Any, key: str) -> int | None:
    """An integer setting that may be unset (None or empty)."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r}: expected an integer") from None


def _device_ids(value: Any, key: str) -> tuple[int, ...] | None:
    """Local device ids from "0,1,2" or a sequence; None when unset."""
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(int(item) for item in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r}: expected comma-separated device ids like '0,1'") from None


def _slurm_tasks(environ: Mapping[str, str]) -> int:
    """The number of SLURM tasks of this step (0 outside SLURM)."""
    return _int_or_none(environ.get("SLURM_NTASKS"), "SLURM_NTASKS") or 0


def _tpu_hosts(environ: Mapping[str, str]) -> int:
    """How many TPU VM hosts the environment names (GKE/XPK and multi-slice set these variables)."""
    hosts = [h for h in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    return max(len(hosts), 2 if environ.get("MEGASCALE_COORDINATOR_ADDRESS") else 0)


def resolve_distributed_args(settings: Mapping[str, Any],
                             environ: Mapping[str, str] | None = None) -> DistributedArgs | None:
    """Decide whether to initialize and with what, from `mesh.distributed` settings and the environment.

    Precedence for each value: the config, then `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` /
    `JAX_PROCESS_ID` / `JAX_LOCAL_DEVICE_IDS`, then SLURM (`SLURM_NTASKS`, `SLURM_PROCID`). In "auto"
    mode it initializes when a coordinator address is given, under a SLURM step of several tasks, or
    on a multi-host TPU; "always" initializes even with nothing known (JAX detects TPU, SLURM,
    Open MPI, Kubernetes); "never" does not. Returns None when it should not initialize.
    """
    environ = os.environ if environ is None else environ
    mode = settings.get("initialize", "auto")
    if mode not in MODES:
        raise ConfigError(f"mesh.distributed.initialize={mode!r}: expected one of {MODES}")
    if mode == "never":
        return None
    key = "mesh.distributed"
    address = settings.get("coordinator_address") or environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = (_int_or_none(settings.get("num_processes"), f"{key}.num_processes")
                     or _int_or_none(environ.get("JAX_NUM_PROCESSES"), "JAX_NUM_PROCESSES"))
    process_id = _int_or_none(settings.get("process_id"), f"{key}.process_id")
    if process_id is None:
        process_id = _int_or_none(environ.get("JAX_PROCESS_ID"), "JAX_PROCESS_ID")
    device_ids = (_device_ids(settings.get("local_device_ids"), f"{key}.local_device_ids")
                  or _device_ids(environ.get("JAX_LOCAL_DEVICE_IDS"), "JAX_LOCAL_DEVICE_IDS"))
    source = "config" if settings.get("coordinator_address") else "environment"
    slurm = _slurm_tasks(environ)
    if slurm and num_processes is None and process_id is None:
        num_processes = slurm
        process_id = _int_or_none(environ.get("SLURM_PROCID"), "SLURM_PROCID")
        source = "slurm"
    timeout_s = int(settings.get("initialization_timeout_s", 300))
    if timeout_s <= 0:
        raise ConfigError(f"{key}.initialization_timeout_s={timeout_s}: expected a positive number of seconds")
    several = (num_processes or 1) > 1 or slurm > 1
    if mode == "auto" and address is None and not several and _tpu_hosts(environ) <= 1:
        return None
    if address is not None or several:
        if address is None:
            raise ConfigError(f"{key}.coordinator_address is unset (and JAX_COORDINATOR_ADDRESS too) for a run "
                              f"of {num_processes} processes; set it to HOST:PORT of process 0")
        if num_processes is None or process_id is None:
            raise ConfigError(f"{key}.coordinator_address={address!r} needs num_processes and process_id (config, "
                              f"JAX_NUM_PROCESSES/JAX_PROCESS_ID or SLURM); got {num_processes}, {process_id}")
        if not 0 <= process_id < num_processes:
            raise ConfigError(f"{key}.process_id={process_id} is not in [0, num_processes={num_processes})")
    return DistributedArgs(address, num_processes, process_id, device_ids, timeout_s,
                           source if address else "auto-detect")


def _split_address(address: str) -> tuple[str, int]:
    """HOST and PORT of "HOST:PORT" (IPv6 hosts in brackets)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"mesh.distributed.coordinator_address={address!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout_s: float, *, poll_s: float = 0.25) -> None:
    """Poll until the coordinator accepts TCP connections; ConfigError after `timeout_s` seconds.

    JAX's own connection timeout aborts the process from C++; this check runs first on every
    process but process 0, so an unreachable coordinator is a Python error with a clear message.
    """
    host, port = _split_address(address)
    deadline = time.monotonic() + timeout_s
    last_error: OSError | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(1.0, timeout_s))):
                return
        except OSError as err:
            last_error = err
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"cannot reach the JAX coordinator at mesh.distributed.coordinator_address={address!r} "
                f"within {timeout_s:g} s ({last_error}); is process 0 running and is the address reachable "
                f"from this host?")
        time.sleep(poll_s)


def maybe_initialize(settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> bool:
    """Call `jax.distributed.initialize` if the settings or environment ask; True if it ran.

    Must run before any other JAX call. Every process logs what it connects to; a process that
    cannot reach the coordinator raises ConfigError within `initialization_timeout_s`. On CPU,
    cross-process collectives need `JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo` in the environment.
    """
    if jax.distributed.is_initialized():
        return False
    args = resolve_distributed_args(settings, environ)
    if args is None:
        return False
    logger.info("jax.distributed.initialize: coordinator %s, process %s of %s (%s); waiting up to %d s for "
                "every process to connect, after which JAX aborts with DEADLINE_EXCEEDED",
                args.coordinator_address or "auto", args.process_id, args.num_processes, args.source,
                args.timeout_s)
    started = time.monotonic()
    if args.explicit and args.process_id != 0:
        wait_for_coordinator(args.coordinator_address, args.timeout_s)
    remaining = max(1, int(args.timeout_s - (time.monotonic() - started)))
    jax.distributed.initialize(
        coordinator_address=args.coordinator_address,
        num_processes=args.num_processes,
        process_id=args.process_id,
        local_device_ids=list(args.local_device_ids) if args.local_device_ids else None,
        cluster_detection_method="deactivate" if args.explicit else None,
        initialization_timeout=remaining,
    )
    logger.info("process %d of %d: %d local devices, %d in all", jax.process_index(), jax.process_count(),
                jax.local_device_count(), jax.device_count())
    return True


def is_primary() -> bool:
    """True on process 0, the one that writes summaries, samples and exports."""
    return jax.process_index() == 0


def process_tag() -> str:
    """A short "[host i/n]" prefix for per-host log lines."""
    return f"[host {jax.process_index()}/{jax.process_count()}]"


class ProcessesOutOfStep(StyleCrafterError, TimeoutError):
    """The other processes did not reach the same collective within the timeout (one died or hangs)."""


class StopAgreement:
    """Whether any process wants to stop, agreed by all: each call's local flags combined by a tiny all-reduce.

    Call it once per step on every process, in the same order as the other collectives. On one process it
    returns `flag` at once. With several it starts the all-reduce (a max of one int32 per process) of this
    call's flags and returns the result of the previous call's, so the host never waits for the step just
    dispatched and every process gets the same answer at the same call: a flag raised at call k stops all
    processes at call k + 1. A previous result not ready within `timeout_s` raises ProcessesOutOfStep.
    """

    def __init__(self, *, timeout_s: float = AGREEMENT_TIMEOUT_S, poll_s: float = 0.001):
        if timeout_s <= 0:
            raise ConfigError(f"stop agreement timeout_s={timeout_s}: expected a positive number of seconds")
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self.processes = jax.process_count()
        self._pending: jax.Array | None = None
        if self.processes > 1:
            devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
            mesh = Mesh(np.asarray(devices).reshape(self.processes, -1), ("processes", "local"))
            self._flags = NamedSharding(mesh, PartitionSpec("processes"))
            self._any = jax.jit(jnp.max, out_shardings=NamedSharding(mesh, PartitionSpec()))

    def __call__(self, flag: bool) -> bool:
        """True when any process raised its flag (at the previous call, with several processes)."""
        if self.processes == 1:
            return bool(flag)
        previous = self._pending
        local = np.asarray([int(bool(flag))], np.int32)
        self._pending = self._any(jax.make_array_from_process_local_data(self._flags, local, (self.processes,)))
        return previous is not None and self._read(previous)

    def _read(self, result: jax.Array) -> bool:
        deadline = time.monotonic() + self.timeout_s
        while not result.is_ready():
            if time.monotonic() > deadline:
                raise ProcessesOutOfStep(f"{process_tag()} the other processes did not reach the stop check "
                                         f"within {self.timeout_s:g} s: one of them has died or hangs")
            time.sleep(self.poll_s)
        return bool(np.asarray(result.addressable_data(0)))
