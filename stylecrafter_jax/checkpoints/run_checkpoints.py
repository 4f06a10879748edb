"""Run checkpoints with orbax: async, every N steps, keep N, resume from the newest.

A checkpoint holds what the run trained (the trainable leaves, their optimizer state and EMA), the
step, the RNG and the data-iterator state; the frozen base weights come from their converted
checkpoint and are never re-saved. Orbax writes to a temporary directory and renames it when
complete, so an interrupted save never replaces the newest good checkpoint.
"""

from __future__ import annotations

from typing import Any

import jax
import orbax.checkpoint as ocp

from stylecrafter_jax.errors import CheckpointMismatchError
from stylecrafter_jax.paths import absolute
from stylecrafter_jax.trees import path_string


class RunCheckpointer:
    """An orbax CheckpointManager over {'state': pytree, 'data': JSON} items."""

    def __init__(self, directory: str, *, keep: int, every: int, asynchronous: bool = True):
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=max(1, every), create=True,
                                               enable_async_checkpointing=asynchronous)
        self.directory = absolute(directory)  # a local folder or a bucket (gs://...: tensorstore writes it)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_state: dict, *, force: bool = False) -> bool:
        """Save when the interval says so (or `force`); returns whether a save started."""
        return self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                               data=ocp.args.JsonSave(data_state)), force=force)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """Restore step `step` into the shapes, dtypes and shardings of `abstract_state`."""
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointMismatchError(
                f"checkpoint {self.directory}/{step} does not match the model being trained: {error}") from error
        _check_shapes(restored.state, abstract_state, f"{self.directory}/{step}")
        return restored.state, restored.data

    def reached_preemption(self, step: int) -> bool:
        """Whether a multi-host preemption notice has reached every host (False on one host)."""
        return jax.process_count() > 1 and self.manager.reached_preemption(step)

    def wait(self) -> None:
        """Block until the async saves in flight are complete."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Finish saves in flight and release the manager."""
        self.manager.close()


def _check_shapes(restored: Any, abstract: Any, where: str) -> None:
    """Raise CheckpointMismatchError naming the leaves whose restored shape differs from the model's."""
    bad = [f"{path_string(path)}: checkpoint {tuple(r.shape)}, model {tuple(a.shape)}"
           for (path, r), a in zip(jax.tree_util.tree_leaves_with_path(restored), jax.tree.leaves(abstract))
           if tuple(r.shape) != tuple(a.shape)]
    if bad:
        raise CheckpointMismatchError(f"checkpoint {where} does not match the model:\n  " + "\n  ".join(bad[:20]))
