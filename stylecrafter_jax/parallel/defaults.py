"""The `mesh` config section: device mesh sizes, logical axis rules and multi-process start-up settings.

Override on the command line, e.g. `--config.mesh.fsdp=4 --config.mesh.tensor=2`, or for two TPU
slices `--config.mesh.dcn_data=2`. Sizes multiply to the device count; one may be -1 (the rest).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from stylecrafter_jax.parallel.rules import DEFAULT_RULES


def distributed_config() -> ml_collections.ConfigDict:
    """Settings for `parallel.distributed.maybe_initialize`; unset values come from the environment."""
    config = ml_collections.ConfigDict()
    config.initialize = "auto"  # "auto": when an address, SLURM or a TPU pod asks; "always"; "never".
    config.coordinator_address = config_dict.placeholder(str)  # HOST:PORT of process 0.
    config.num_processes = config_dict.placeholder(int)
    config.process_id = config_dict.placeholder(int)
    config.local_device_ids = config_dict.placeholder(str)  # "0,1,2,3"; unset: all local devices.
    config.initialization_timeout_s = 300  # Seconds to reach the coordinator / wait for all hosts.
    return config


def mesh_config(data: int = 1, fsdp: int = -1, tensor: int = 1) -> ml_collections.ConfigDict:
    """The mesh section; the default shards parameters and the batch over every device (FSDP)."""
    config = ml_collections.ConfigDict()
    config.data = data
    config.fsdp = fsdp
    config.tensor = tensor
    config.dcn_data = 1  # Across slices (TPU) or processes (GPU); the per-slice sizes above.
    config.dcn_fsdp = 1
    config.dcn_tensor = 1
    config.dcn_granule = "auto"  # What a DCN unit is: "slice", "process", or "auto".
    config.rules = DEFAULT_RULES
    config.distributed = distributed_config()
    return config
