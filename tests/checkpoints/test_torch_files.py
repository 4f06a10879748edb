"""Reading and writing PyTorch state-dict files: pickles (zip and legacy), Lightning nesting, nested dicts,
safetensors without torch, half precision, truncated and corrupt files, the weights_only guard."""

import collections
import hashlib
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from stylecrafter_jax.checkpoints.torch_files import (TensorRef, file_record, flatten_nested, read_state_dict,
                                                      write_state_dict)
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError


@pytest.fixture(scope="module")
def tensors():
    generator = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(4, 3, generator=generator),
            "b.half": torch.randn(5, generator=generator).half(),
            "c.bf16": torch.randn(2, 3, generator=generator).bfloat16(),
            "d.scalar": torch.tensor(2.5),
            "e.index": torch.arange(4)}


def _assert_matches(refs, tensors):
    assert set(refs) == set(tensors)
    for key, tensor in tensors.items():
        array = np.asarray(refs[key])
        assert refs[key].shape == tuple(tensor.shape) == array.shape, key
        expected = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
        assert array.dtype == expected.dtype, key
        np.testing.assert_array_equal(array, expected, err_msg=key)


def test_lightning_checkpoint_is_unwrapped_memory_mapped_and_converted(tmp_path, tensors):
    path = str(tmp_path / "model.ckpt")
    torch.save({"state_dict": tensors, "epoch": 3, "global_step": 10}, path)
    refs = read_state_dict(path)
    _assert_matches(refs, tensors)
    assert isinstance(refs["a.weight"], TensorRef) and refs["b.half"].dtype == "float16"
    assert refs["c.bf16"].dtype == "bfloat16"
    view = np.asarray(refs["a.weight"])
    assert not view.flags.owndata  # float32 comes back as a view of the memory-mapped file, not a copy


def test_nested_state_dicts_are_flattened_with_dots(tmp_path, tensors):
    path = str(tmp_path / "temporal.pth")
    torch.save({"input_blocks.1.2": collections.OrderedDict(tensors), "init_attn.0": {"norm.weight": tensors["a.weight"]}},
               path)
    refs = read_state_dict(path)
    assert set(refs) == {f"input_blocks.1.2.{k}" for k in tensors} | {"init_attn.0.norm.weight"}
    np.testing.assert_array_equal(np.asarray(refs["init_attn.0.norm.weight"]), tensors["a.weight"].numpy())
    assert flatten_nested({"x": {"y.z": 1}, "w": 2}) == {"x.y.z": 1, "w": 2}


def test_legacy_pickle_format_is_read_without_mmap(tmp_path, tensors):
    path = str(tmp_path / "legacy.bin")
    torch.save(tensors, path, _use_new_zipfile_serialization=False)
    _assert_matches(read_state_dict(path), tensors)


def test_safetensors_half_precision_is_read_as_float32(tmp_path, tensors):
    path = str(tmp_path / "weights.safetensors")
    arrays = {k: (t.float().numpy().astype(ml_dtypes.bfloat16) if t.dtype == torch.bfloat16 else t.numpy())
              for k, t in tensors.items()}
    save_file(arrays, path)
    _assert_matches(read_state_dict(path), tensors)


def test_safetensors_are_read_without_importing_torch(tmp_path):
    path = str(tmp_path / "weights.safetensors")
    save_file({"w": np.arange(6, dtype=np.float16).reshape(2, 3)}, path)
    script = ("import sys, numpy as np\n"
              "from stylecrafter_jax.checkpoints.torch_files import read_state_dict\n"
              f"refs = read_state_dict({path!r})\n"
              "assert np.asarray(refs['w']).dtype == np.float32 and np.asarray(refs['w'])[1, 2] == 5\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("suffix,legacy", [(".pth", False), (".bin", True), (".safetensors", False)])
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_files_raise_naming_the_file(tmp_path, tensors, suffix, legacy, keep):
    path = str(tmp_path / f"whole{suffix}")
    if suffix == ".safetensors":
        save_file({"w": np.ones((64, 64), np.float32)}, path)
    else:
        torch.save(tensors, path, _use_new_zipfile_serialization=not legacy)
    data = open(path, "rb").read()
    truncated = str(tmp_path / f"truncated{suffix}")
    with open(truncated, "wb") as handle:
        handle.write(data[:int(len(data) * keep)])
    with pytest.raises(CheckpointMismatchError, match="truncated.*") as error:
        read_state_dict(truncated)
    assert truncated in str(error.value)


def test_garbage_file_raises(tmp_path):
    path = str(tmp_path / "garbage.pth")
    with open(path, "wb") as handle:
        handle.write(os.urandom(4096))
    with pytest.raises(CheckpointMismatchError, match="garbage.pth"):
        read_state_dict(path)


class _Hyper:  # an arbitrary object, as Lightning checkpoints can carry
    pass


def test_pickles_with_objects_need_unsafe_pickle(tmp_path, tensors):
    path = str(tmp_path / "objects.ckpt")
    torch.save({"state_dict": tensors, "hyper_parameters": _Hyper()}, path)
    with pytest.raises(CheckpointMismatchError, match="unsafe"):
        read_state_dict(path)
    _assert_matches(read_state_dict(path, unsafe_pickle=True), tensors)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="suffix"):
        (tmp_path / "w.npz").write_bytes(b"x")
        read_state_dict(str(tmp_path / "w.npz"))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_state_dict(str(tmp_path / "nope.pth"))


def test_write_pth_keeps_nesting_dtypes_and_scalars(tmp_path):
    arrays = {"outer.0": {"w": np.arange(6, dtype=np.float32).reshape(2, 3).T, "s": np.float32(1.5)},
              "idx": np.arange(3)}
    path = str(tmp_path / "out.pth")
    write_state_dict(path, arrays)
    loaded = torch.load(path, weights_only=True)
    assert loaded["outer.0"]["w"].is_contiguous() and loaded["outer.0"]["s"].shape == ()
    np.testing.assert_array_equal(loaded["outer.0"]["w"].numpy(), arrays["outer.0"]["w"])
    assert loaded["idx"].dtype == torch.int64
    write_state_dict(path, arrays, dtype="bfloat16")
    loaded = torch.load(path, weights_only=True)
    assert loaded["outer.0"]["w"].dtype == torch.bfloat16 and loaded["idx"].dtype == torch.int64


def test_write_safetensors_flattens_and_casts(tmp_path):
    arrays = {"outer.0": {"w": np.linspace(0, 1, 6, dtype=np.float32).reshape(3, 2)}}
    path = str(tmp_path / "out.safetensors")
    write_state_dict(path, arrays, dtype="float16")
    loaded = load_file(path)
    assert list(loaded) == ["outer.0.w"] and loaded["outer.0.w"].dtype == np.float16
    np.testing.assert_array_equal(loaded["outer.0.w"], arrays["outer.0"]["w"].astype(np.float16))
    with pytest.raises(ConfigError, match="dtype"):
        write_state_dict(path, arrays, dtype="int8")
    with pytest.raises(ConfigError, match="suffix"):
        write_state_dict(str(tmp_path / "out.h5"), arrays)


def test_file_record_hashes_the_file(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"stylecrafter" * 1000)
    record = file_record(str(path))
    assert record == {"path": str(path), "size": 12000, "sha256": hashlib.sha256(b"stylecrafter" * 1000).hexdigest()}
