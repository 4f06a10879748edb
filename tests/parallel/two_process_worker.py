"""One process of the 2-process CPU run in test_distributed.py: prints its results as one JSON line.

Usage: python two_process_worker.py SETTINGS_JSON CHECKPOINT_DIR (4 CPU devices per process via XLA_FLAGS).
"""

import json
import logging
import sys

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

from stylecrafter_jax.parallel.distributed import StopAgreement, is_primary, maybe_initialize  # noqa: E402

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
initialized = maybe_initialize(json.loads(sys.argv[1]))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from stylecrafter_jax.parallel.arrays import make_global_batch, process_batch_size, process_data_shard  # noqa: E402
from stylecrafter_jax.parallel.defaults import mesh_config  # noqa: E402
from stylecrafter_jax.parallel.mesh import create_mesh  # noqa: E402

pid = jax.process_index()
config = mesh_config(1, -1, 1)
config.dcn_data = 2  # the data axis across the two processes, fsdp within each
mesh = create_mesh(config)
data_axis_processes = [sorted({d.process_index for d in mesh.devices[i].flat}) for i in range(mesh.shape["data"])]

full = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
index, count = process_data_shard(mesh)
rows = process_batch_size(8, mesh)
batch = make_global_batch({"x": full[index * rows:(index + 1) * rows]}, mesh)["x"]
total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(batch)
column_sums = jax.jit(jax.shard_map(lambda x: jax.lax.psum(x, ("data", "fsdp")), mesh=mesh,
                                    in_specs=P(("data", "fsdp")), out_specs=P()))(batch)

# A mesh whose tensor axis spans the processes: both hold the same batch rows, so one data shard.
devices = np.array(jax.devices()).reshape(2, 4).T.reshape(1, 4, 2)
tensor_mesh = Mesh(devices, ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3)

# Every process writes its shards of one checkpoint through orbax.
weights = jax.device_put(np.arange(16 * 8, dtype=np.float32).reshape(16, 8), NamedSharding(mesh, P("fsdp", None)))
with ocp.CheckpointManager(sys.argv[2], options=ocp.CheckpointManagerOptions(create=True)) as manager:
    manager.save(1, args=ocp.args.StandardSave({"weights": weights, "batch": batch}))
    manager.wait_until_finished()

# Only process 1 raises its stop flag, at call 2: both hear of it at call 3.
agree = StopAgreement(timeout_s=60)
stops = [agree(pid == 1 and call == 2) for call in range(5)]

print(json.dumps({
    "initialized": initialized,
    "process": [pid, jax.process_count()],
    "primary": is_primary(),
    "devices": [jax.local_device_count(), jax.device_count()],
    "mesh": dict(mesh.shape),
    "data_axis_processes": data_axis_processes,
    "data_shard": [index, count],
    "rows": rows,
    "total": float(total),
    "column_sums": np.asarray(column_sums).reshape(-1).tolist(),
    "tensor_mesh_data_shard": list(process_data_shard(tensor_mesh)),
    "stops": stops,
}), flush=True)
