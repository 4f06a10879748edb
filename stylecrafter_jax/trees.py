"""Pytree key paths as the "/"-joined strings that stage rules, reports and error messages name leaves by."""

from __future__ import annotations

import jax


def path_string(path: jax.tree_util.KeyPath) -> str:
    """The key path of a leaf as "/"-joined keys: (DictKey("unet"), DictKey("out_2")) -> "unet/out_2"."""
    return jax.tree_util.keystr(path, simple=True, separator="/")
