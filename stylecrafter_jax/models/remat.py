"""Rematerialisation (gradient checkpointing) of blocks, with the policy named in config."""

from __future__ import annotations

import flax.linen as nn
import jax

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat(module_cls: type[nn.Module], policy: str) -> type[nn.Module]:
    """Return `module_cls` wrapped in nn.remat with the named policy ("none" leaves it as is)."""
    if policy not in REMAT_POLICIES:
        raise ValueError(f"remat policy {policy!r}: expected one of {sorted(REMAT_POLICIES)}")
    if policy == "none":
        return module_cls
    return nn.remat(module_cls, policy=REMAT_POLICIES[policy], prevent_cse=True)
