"""The converted-weights directory that train, sample and evaluate load their base weights from.

Layout: `<directory>/manifest.json` records the format version, each component with its parameter,
leaf and part counts, and whatever the writer adds (source files with sizes and sha256, model config,
converter version). `<directory>/<component>/part-NNN/` are orbax checkpoints (`StandardCheckpointer`)
that together hold the component's tree, each at most `PART_BYTES` (or one leaf): orbax copies what it
saves (twice for numpy input), so saving part by part keeps the extra host memory of a save to about
two parts instead of twice the component. A variant of some components (e.g. a training run's EMA
weights) lives in `<directory>/variants/<variant>/<component>/part-NNN/`, listed in the manifest's
`variants`; loading a variant takes those components from it and the rest from the directory. Loading
checks every stored leaf against the caller's abstract tree first, so the weights of another model config
fail with the component and leaf named instead of loading silently.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import traverse_util

from stylecrafter_jax import paths
from stylecrafter_jax.checkpoints.torch_layout import format_mismatch
from stylecrafter_jax.errors import CheckpointMismatchError

MANIFEST = "manifest.json"
FORMAT = "stylecrafter-jax/pretrained"
FORMAT_VERSION = 1
PART_BYTES = 1 << 29  # 512 MiB
VARIANTS = "variants"


def save_pretrained(directory: str, components: Mapping[str, Any], manifest: Mapping[str, Any], *,
                    overwrite: bool = False) -> dict[str, Any]:
    """Write the components and `manifest.json`; returns the manifest written.

    `manifest` holds what the writer wants recorded (sources, model config, converter version); the
    format version and each component's counts are added. A directory that already has the manifest or
    one of the components is refused unless `overwrite`.
    """
    ensure_writable(directory, overwrite)
    summary = {name: save_component(directory, name, params, overwrite=overwrite)
               for name, params in components.items()}
    return write_manifest(directory, manifest, summary, overwrite=overwrite)


def ensure_writable(directory: str, overwrite: bool) -> None:
    """FileExistsError if `directory` already holds converted weights and `overwrite` is off."""
    if epath.Path(directory, MANIFEST).exists() and not overwrite:
        raise FileExistsError(f"{paths.absolute(directory)} already holds converted weights ({MANIFEST}); "
                              "choose another directory or overwrite")


def save_component(directory: str, name: str, params: Any, *, overwrite: bool = False) -> dict[str, int]:
    """Write one component as `<directory>/<name>/part-NNN/`; returns its parameter, leaf and part counts."""
    path = os.path.join(paths.absolute(directory), name)
    if epath.Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another directory or overwrite")
    flat = traverse_util.flatten_dict(nn.unbox(params), sep="/")
    parts = _split(flat)
    checkpointer = ocp.StandardCheckpointer()  # collective: every process of a multi-host run calls this
    for index, part in enumerate(parts):
        checkpointer.save(os.path.join(path, _part_name(index)), traverse_util.unflatten_dict(part, sep="/"),
                          force=overwrite)
        checkpointer.wait_until_finished()  # one part in flight at a time
    return {"num_params": int(sum(np.size(leaf) for leaf in flat.values())), "num_leaves": len(flat),
            "parts": len(parts)}


def _split(flat: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Consecutive groups of leaves of at most PART_BYTES each (a larger leaf is a group of its own)."""
    parts: list[dict[str, Any]] = []
    size = PART_BYTES
    for path, leaf in flat.items():
        nbytes = int(np.size(leaf)) * np.dtype(leaf.dtype).itemsize
        if size + nbytes > PART_BYTES:
            parts.append({})
            size = 0
        parts[-1][path] = leaf
        size += nbytes
    return parts


def _part_name(index: int) -> str:
    return f"part-{index:03d}"


def variant_directory(directory: str, variant: str) -> str:
    """Where `save_component` writes the components of a variant of `directory`."""
    return os.path.join(directory, VARIANTS, variant)


def write_manifest(directory: str, manifest: Mapping[str, Any], components: Mapping[str, Mapping[str, int]], *,
                   overwrite: bool = False) -> dict[str, Any]:
    """Write `manifest.json` (the format fields, `manifest`, and the `components` summary); returns it.

    `manifest["variants"]`, when given, is {variant: {component: summary}} of the variants written."""
    ensure_writable(directory, overwrite)
    written = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "components": dict(components)}
    paths.write_text(os.path.join(directory, MANIFEST),
                     json.dumps(written, indent=2, sort_keys=True, default=_json_default))
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"manifest value of type {type(value).__name__} is not JSON serialisable")


def read_manifest(directory: str) -> dict[str, Any]:
    """The manifest of a converted directory; CheckpointMismatchError if there is none or it is not ours."""
    path = os.path.join(directory, MANIFEST)
    if not epath.Path(path).is_file():
        raise CheckpointMismatchError(f"{directory}: not a converted-weights directory (no {MANIFEST}); "
                                      "create one with `python -m stylecrafter_jax.convert import`")
    manifest = json.loads(epath.Path(path).read_bytes())
    if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointMismatchError(f"{path}: format {manifest.get('format')!r} version "
                                      f"{manifest.get('format_version')!r}, expected {FORMAT!r} <= {FORMAT_VERSION}")
    return manifest


def load_pretrained(directory: str, names: Sequence[str], abstract: Mapping[str, Any] | None = None,
                    shardings: Mapping[str, Any] | None = None, variant: str = "") -> dict[str, Any]:
    """{name: parameters} of the named components of a converted directory.

    `abstract[name]` (a tree of ShapeDtypeStructs or arrays, boxed or not) is what the caller's model
    expects: every stored leaf must match it in path and shape, else one CheckpointMismatchError names
    the component and lists the missing, unexpected and mis-shaped leaves; leaves are restored in its
    dtypes and, where its leaves carry one (ShapeDtypeStruct(sharding=...), jax.Array), its shardings.
    `shardings[name]` (a tree of shardings like it, or one sharding for every leaf) overrides those;
    leaves without a sharding come back as numpy arrays on the host. `variant` (e.g. "ema") takes the
    components that variant holds from it.
    """
    manifest = read_manifest(directory)
    available, variants = manifest["components"], manifest.get("variants", {})
    if variant and variant not in variants:
        raise CheckpointMismatchError(f"{directory}: no variant {variant!r}; it holds "
                                      f"{sorted(variants) or 'none'} (an EMA variant needs train.ema_decay > 0)")
    in_variant = variants.get(variant, {})
    checkpointer = ocp.StandardCheckpointer()
    loaded = {}
    for name in names:
        if name not in available:
            raise CheckpointMismatchError(f"{directory}: no component {name!r}; it holds {sorted(available)}")
        root = variant_directory(directory, variant) if name in in_variant else directory
        parts = (in_variant.get(name) or available[name])["parts"]
        part_paths = [os.path.join(paths.absolute(root), name, _part_name(i)) for i in range(parts)]
        stored = [_stored_leaves(checkpointer.metadata(path)) for path in part_paths]
        target = {key: (*leaf, None) for part in stored for key, leaf in part.items()}
        if abstract is not None and name in abstract:
            expected = {key: (tuple(leaf.shape), leaf.dtype, getattr(leaf, "sharding", None)) for key, leaf in
                        traverse_util.flatten_dict(nn.unbox(abstract[name]), sep="/").items()}
            _check_leaves(expected, target, source=f"{directory}: component {name!r}")
            target = expected
        if shardings and name in shardings:
            override = _flat_shardings(shardings[name], target)
            target = {key: (shape, dtype, override[key]) for key, (shape, dtype, _) in target.items()}
        flat = {}
        for path, part in zip(part_paths, stored):
            structs = {key: jax.ShapeDtypeStruct(target[key][0], target[key][1], sharding=target[key][2])
                       for key in part}
            flat.update(traverse_util.flatten_dict(
                checkpointer.restore(path, traverse_util.unflatten_dict(structs, sep="/")), sep="/"))
        loaded[name] = traverse_util.unflatten_dict(flat, sep="/")
    return loaded


def _stored_leaves(metadata: Any) -> dict[str, tuple[tuple[int, ...], Any]]:
    """{"/"-joined path: (shape, dtype)} of an orbax checkpoint's metadata (old and new orbax APIs)."""
    tree = getattr(metadata, "item_metadata", metadata)
    tree = getattr(tree, "tree", tree)
    return {key: (tuple(leaf.shape), leaf.dtype) for key, leaf in traverse_util.flatten_dict(tree, sep="/").items()}


def _check_leaves(expected: Mapping[str, tuple], stored: Mapping[str, tuple], *, source: str) -> None:
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    misshaped = sorted(f"{key}: stored {stored[key][0]}, model {expected[key][0]}"
                       for key in set(expected) & set(stored) if stored[key][0] != expected[key][0])
    if missing or unexpected or misshaped:
        raise CheckpointMismatchError(format_mismatch(source, missing, unexpected, misshaped)
                                      + "\n  (were the weights converted for another model config?)")


def _flat_shardings(shardings: Any, target: Mapping[str, Any]) -> dict[str, Any]:
    """{path: sharding} from one sharding for every leaf or a tree of shardings."""
    if isinstance(shardings, jax.sharding.Sharding):
        return dict.fromkeys(target, shardings)
    return traverse_util.flatten_dict(nn.unbox(shardings), sep="/")
