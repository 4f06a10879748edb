"""Read and write PyTorch state-dict files: `.ckpt`/`.pth`/`.pt`/`.bin` pickles and `.safetensors`.

Reading returns a flat `{key: TensorRef}` dict: nested dicts (the temporal file's
`{module path: state dict}`) are flattened with "." and a top-level `state_dict` entry (Lightning,
and the optional wrapper of the official files) is unwrapped. A `TensorRef` knows its shape and
dtype and converts to numpy only when asked (`np.asarray(ref)`), one tensor at a time, so a file is
never held in memory twice: pickles are memory-mapped (`torch.load(mmap=True, weights_only=True)`,
torch imported only for them) and float32 tensors come back as views of the mapping; float16 and
bfloat16 tensors come back as float32 copies. `.safetensors` files are read through
`safetensors` without torch. A truncated or corrupt file raises CheckpointMismatchError naming it.
Pickles need torch: without it, one ConfigError names what to install (conversion runs once, on any
machine; torch's own loader reads every pickle variant the official files come in).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from typing import Any, Mapping

import ml_dtypes  # noqa: F401  (registers the "bfloat16" numpy dtype that safetensors asks for)
import numpy as np

from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError

PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
HALF_DTYPES = ("float16", "bfloat16")
EXPORT_DTYPES = ("float32", "float16", "bfloat16")
_HASH_BLOCK = 1 << 24
# What torch.load raises on truncated or corrupt files (zip reader, legacy and weights-only unpicklers).
_CORRUPT_FILE_ERRORS = (RuntimeError, EOFError, ValueError, OSError, IndexError, KeyError, TypeError)


class TensorRef:
    """A tensor of a state-dict file, converted to numpy (half precision -> float32) on demand."""

    def __init__(self, shape: tuple[int, ...], dtype: str, load):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = dtype
        self._load = load

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self._load()
        if self.dtype in HALF_DTYPES:
            array = array.astype(np.float32, copy=False)
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"TensorRef(shape={self.shape}, dtype={self.dtype})"


def read_state_dict(path: str, *, unsafe_pickle: bool = False) -> dict[str, Any]:
    """The flat `{key: TensorRef}` state dict of a `.ckpt`/`.pth`/`.pt`/`.bin` or `.safetensors` file.

    Pickles are loaded with `weights_only=True`; a file that needs arbitrary objects (some Lightning
    checkpoints) is refused unless `unsafe_pickle`, which must only be used for trusted files.
    Non-tensor entries of the state dict (rare) are kept as numpy values.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        return _read_pickle(path, unsafe_pickle)
    raise ConfigError(f"checkpoint file {path!r}: unknown suffix {suffix!r}, expected one of "
                      f"{(*PICKLE_SUFFIXES, SAFETENSORS_SUFFIX)}")


def _read_safetensors(path: str) -> dict[str, TensorRef]:
    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(path, framework="numpy")
        refs = {}
        for key in handle.keys():
            piece = handle.get_slice(key)
            refs[key] = TensorRef(tuple(piece.get_shape()), _SAFETENSORS_DTYPES.get(piece.get_dtype(), piece.get_dtype()),
                                  lambda key=key: handle.get_tensor(key))
    except (SafetensorError, OSError) as error:
        raise CheckpointMismatchError(f"{path}: not a readable safetensors file (truncated or corrupt?): "
                                      f"{error}") from error
    return refs


_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def import_torch(purpose: str) -> Any:
    """The torch module, or ConfigError naming `purpose`, what to install and the torch-free alternative."""
    try:
        import torch
    except ImportError as error:
        raise ConfigError(f"{purpose} needs PyTorch, which is not installed: `pip install torch` (the CPU wheel "
                          f"is enough), or use {SAFETENSORS_SUFFIX} files, which need no torch") from error
    return torch


def _read_pickle(path: str, unsafe_pickle: bool) -> dict[str, Any]:
    torch = import_torch(f"reading the PyTorch pickle {path!r}")
    # Only zip-format files (torch >= 1.6) can be memory-mapped; legacy pickles are read whole.
    mmap = zipfile.is_zipfile(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=not unsafe_pickle, mmap=mmap)
    except (pickle.UnpicklingError, *_CORRUPT_FILE_ERRORS) as error:
        if "unsupported global" in str(error).lower():
            raise CheckpointMismatchError(
                f"{path}: holds Python objects besides tensors, refused by torch.load(weights_only=True). "
                f"If you trust the file, load it with unsafe_pickle=True (CLI: --unsafe-pickle).") from error
        raise CheckpointMismatchError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): "
                                      f"{_first_line(error)}") from error
    if not isinstance(loaded, Mapping):
        raise CheckpointMismatchError(f"{path}: holds a {type(loaded).__name__}, expected a dict of tensors")
    if isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    return {key: _torch_ref(value) for key, value in flatten_nested(loaded).items()}


def _first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _torch_ref(value: Any) -> Any:
    import torch

    if not isinstance(value, torch.Tensor):
        return np.asarray(value)
    tensor = value.detach()
    dtype = str(tensor.dtype).removeprefix("torch.")
    load = (lambda: tensor.float().numpy()) if dtype == "bfloat16" else tensor.numpy
    return TensorRef(tuple(tensor.shape), dtype, load)


def flatten_nested(tree: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
    """`{"a.1": {"b.weight": x}}` -> `{"a.1.b.weight": x}`; flat dicts come back unchanged."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}{sep}{inner}": leaf for inner, leaf in flatten_nested(value, sep).items()})
        else:
            flat[str(key)] = value
    return flat


def write_state_dict(path: str, state_dict: Mapping[str, Any], *, dtype: str = "float32") -> None:
    """Write numpy arrays (nested dicts allowed) as a `.pth`-style pickle (needs torch) or `.safetensors`.

    Floating arrays are cast to `dtype`; safetensors files are flat, so nested keys are joined with ".".
    """
    if dtype not in EXPORT_DTYPES:
        raise ConfigError(f"export dtype {dtype!r}: expected one of {EXPORT_DTYPES}")
    suffix = os.path.splitext(path)[1].lower()
    target = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    cast = lambda a: np.asarray(a, dtype=target if np.issubdtype(a.dtype, np.floating)  # noqa: E731
                                else a.dtype, order="C")
    if suffix == SAFETENSORS_SUFFIX:
        from safetensors.numpy import save_file

        save_file({key: cast(np.asarray(value)) for key, value in flatten_nested(state_dict).items()}, path)
        return
    if suffix not in PICKLE_SUFFIXES:
        raise ConfigError(f"output file {path!r}: unknown suffix {suffix!r}, expected .pth (or "
                          f"{', '.join(PICKLE_SUFFIXES[:1] + PICKLE_SUFFIXES[2:])}) or {SAFETENSORS_SUFFIX}")
    torch = import_torch(f"writing {path!r}")
    torch_dtype = getattr(torch, dtype)

    def to_tensor(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: to_tensor(inner) for key, inner in value.items()}
        array = np.asarray(value, order="C")
        tensor = torch.from_numpy(array)
        return tensor.to(torch_dtype) if tensor.is_floating_point() else tensor

    torch.save(to_tensor(state_dict), path)


def file_record(path: str) -> dict[str, Any]:
    """{"path", "size" (bytes), "sha256"} of a file, hashed in 16 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return {"path": os.path.abspath(path), "size": os.path.getsize(path), "sha256": digest.hexdigest()}
