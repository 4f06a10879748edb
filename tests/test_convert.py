"""`python -m stylecrafter_jax.convert` end to end on synthetic official files: import into a converted
directory (manifest, exact weights), export back bit-identical, `--only`, smaller widths, and errors (one line naming torch where it is missing)."""

import hashlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from stylecrafter_jax.checkpoints.conversion import CONVERTER_VERSION, abstract_components, encoder_configs
from stylecrafter_jax.checkpoints.official_import import UNET_PREFIX, temporal_module_paths
from stylecrafter_jax.checkpoints.pretrained import load_pretrained, read_manifest
from stylecrafter_jax.checkpoints.synthetic import write_official_files
from stylecrafter_jax.convert import main
from stylecrafter_jax.diffusion.schedule import make_schedule
from stylecrafter_jax.models.sizes import model_config


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    files, components = write_official_files(str(tmp_path_factory.mktemp("official")), model_config("tiny"),
                                             encoder_configs("tiny"))
    return files, components


@pytest.fixture(scope="module")
def converted(tiny_files, tmp_path_factory):
    files, _ = tiny_files
    out = str(tmp_path_factory.mktemp("converted") / "weights")
    assert main(["import", "--videocrafter", files.videocrafter, "--adapter", files.adapter, "--temporal",
                 files.temporal, "--open-clip", files.open_clip, "--out", out, "--config", "tiny"]) == 0
    return out


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_import_writes_every_component_exactly_and_a_complete_manifest(tiny_files, converted):
    files, expected = tiny_files
    manifest = read_manifest(converted)
    assert manifest["converter_version"] == CONVERTER_VERSION
    assert manifest["model_config"] == json.loads(json.dumps(model_config("tiny").to_dict()))
    assert manifest["encoder_configs"] == json.loads(json.dumps(encoder_configs("tiny").to_dict()))
    assert manifest["ddpm_schedule_buffers"] == "checked"
    for source in ("videocrafter", "adapter", "temporal", "open_clip"):
        path = getattr(files, source)
        record = manifest["sources"][source]
        assert record["path"] == path and record["sha256"] == _sha256(path)
        assert record["size"] == len(open(path, "rb").read())
    assert manifest["component_sources"]["unet"] == ["videocrafter", "temporal"]
    assert set(manifest["components"]) == {"unet", "adapter", "vae", "text_encoder", "image_encoder", "schedule"}
    abstract = abstract_components(model_config("tiny"), encoder_configs("tiny"))
    loaded = load_pretrained(converted, list(abstract), abstract)
    for name, params in expected.items():
        assert manifest["components"][name]["num_params"] == sum(leaf.size for leaf in jax.tree.leaves(params))
        assert jax.tree.all(jax.tree.map(np.array_equal, loaded[name], params)), name
    schedule = load_pretrained(converted, ["schedule"])["schedule"]  # the file's buffers, as stored
    assert set(schedule) == set(make_schedule()._fields)
    assert all(np.array_equal(schedule[k], v) for k, v in make_schedule()._asdict().items())


def test_export_gives_back_the_official_files(tiny_files, converted, tmp_path):
    files, _ = tiny_files
    adapter_path, temporal_path = str(tmp_path / "adapter.pth"), str(tmp_path / "temporal.pth")
    assert main(["export", "--checkpoint", converted, "--component", "adapter", "--out", adapter_path]) == 0
    assert main(["export", "--checkpoint", converted, "--component", "temporal", "--out", temporal_path]) == 0
    original, back = torch.load(files.adapter, weights_only=True), torch.load(adapter_path, weights_only=True)
    assert set(back) == set(original) and all(torch.equal(original[k], back[k]) for k in original)
    original, back = torch.load(files.temporal, weights_only=True), torch.load(temporal_path, weights_only=True)
    assert list(back) == list(original)  # nested by module path
    assert all(torch.equal(original[m][k], back[m][k]) for m in original for k in original[m])
    assert set(back["init_attn.0"]) == set(original["init_attn.0"])

    unet_path, unet_safetensors = str(tmp_path / "unet.pth"), str(tmp_path / "unet.safetensors")
    assert main(["export", "--checkpoint", converted, "--component", "unet", "--out", unet_path]) == 0
    assert main(["export", "--checkpoint", converted, "--component", "unet", "--out", unet_safetensors]) == 0
    model_ckpt = torch.load(files.videocrafter, weights_only=True)["state_dict"]
    exported = torch.load(unet_path, weights_only=True)
    assert list(exported) == ["state_dict"]  # what the reference's load_model_checkpoint expects
    exported = exported["state_dict"]
    flat_safetensors = load_file(unet_safetensors)
    temporal_keys = {f"{UNET_PREFIX}{m}.{k}": t for m, inner in original.items() for k, t in inner.items()}
    assert set(exported) == set(flat_safetensors)
    assert set(exported) == {k for k in model_ckpt if k.startswith(UNET_PREFIX) and ".processor." not in k}
    for key, tensor in exported.items():
        want = temporal_keys.get(key, model_ckpt[key])
        assert torch.equal(tensor, want), key
        np.testing.assert_array_equal(flat_safetensors[key], want.numpy())


def test_safetensors_export_and_half_precision(converted, tmp_path):
    path = str(tmp_path / "temporal.safetensors")
    assert main(["export", "--checkpoint", converted, "--component", "temporal", "--out", path,
                 "--dtype", "float16"]) == 0
    flat = load_file(path)
    modules = temporal_module_paths(abstract_components(model_config("tiny"), names=("unet",))["unet"])
    assert {k.rsplit(".", 2)[0] for k in flat} >= set(modules) and all(v.dtype == np.float16 for v in flat.values())
    assert len(flat) == 30 * len(modules)


WIDE_CONFIG = """
from stylecrafter_jax.models.sizes import model_config


def get_config(arg=None):
    model = model_config(arg or "tiny")
    model.unet.model_channels = 64
    return model
"""


def test_only_and_a_config_file_with_a_smaller_width(tmp_path):
    config_file = tmp_path / "wide.py"
    config_file.write_text(WIDE_CONFIG)
    model = model_config("tiny")
    model.unet.model_channels = 64
    files, expected = write_official_files(str(tmp_path / "official"), model, names=("unet", "adapter"),
                                           suffix=".safetensors")
    out = str(tmp_path / "weights")
    assert main(["import", "--videocrafter", files.videocrafter, "--adapter", files.adapter, "--temporal",
                 files.temporal, "--out", out, "--config", f"{config_file}:tiny", "--only", "unet,adapter",
                 "--no-hash"]) == 0
    manifest = read_manifest(out)
    assert set(manifest["components"]) == {"unet", "adapter"} and manifest["encoder_configs"] is None
    assert manifest["model_config"]["unet"]["model_channels"] == 64
    assert set(manifest["sources"]) == {"videocrafter", "adapter", "temporal"}
    assert "sha256" not in manifest["sources"]["adapter"]
    loaded = load_pretrained(out, ["unet", "adapter"])
    for name in ("unet", "adapter"):
        assert jax.tree.all(jax.tree.map(np.array_equal, loaded[name], expected[name])), name


def test_a_stage_config_file_selects_the_model(tiny_files, tmp_path):
    files, expected = tiny_files
    out = str(tmp_path / "weights")
    assert main(["import", "--adapter", files.adapter, "--out", out, "--config", "configs/stage1.py:tiny"]) == 0
    manifest = read_manifest(out)
    assert manifest["model_config"]["size"] == "tiny" and list(manifest["components"]) == ["adapter"]
    loaded = load_pretrained(out, ["adapter"])["adapter"]
    assert jax.tree.all(jax.tree.map(np.array_equal, loaded, expected["adapter"]))


def test_errors_are_reported_without_traceback(tiny_files, converted, tmp_path, capsys):
    files, _ = tiny_files
    out = str(tmp_path / "weights")
    assert main(["import", "--adapter", files.adapter, "--out", out, "--config", "tiny", "--only", "vae"]) == 1
    assert "component 'vae' needs --videocrafter" in capsys.readouterr().err
    assert main(["import", "--adapter", files.adapter, "--out", converted, "--config", "tiny"]) == 1
    assert "already holds converted weights" in capsys.readouterr().err
    assert main(["import", "--adapter", files.adapter, "--out", out, "--config", "full"]) == 1
    err = capsys.readouterr().err
    assert files.adapter in err and "mis-shaped" in err and "image_context_model.proj: file (64, 64), model (1280, 1024)" in err

    truncated = str(tmp_path / "model.ckpt")
    data = open(files.videocrafter, "rb").read()
    open(truncated, "wb").write(data[: len(data) - 100])
    assert main(["import", "--videocrafter", truncated, "--out", out, "--config", "tiny", "--only", "unet"]) == 1
    err = capsys.readouterr().err
    assert truncated in err and "truncated" in err


def test_import_without_torch_names_what_to_install(tiny_files, tmp_path):
    files, _ = tiny_files
    # A finder that refuses torch, as where it is not installed; unlike sys.modules['torch'] = None it
    # leaves 'torch' out of sys.modules, which einops reads to pick its backends.
    script = ("import sys\n"
              "class NoTorch:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name.split('.')[0] == 'torch':\n"
              "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
              "sys.meta_path.insert(0, NoTorch())\n"
              "from stylecrafter_jax.convert import main\n"
              f"sys.exit(main(['import', '--adapter', {files.adapter!r}, '--out', {str(tmp_path / 'w')!r}, "
              "'--config', 'tiny']))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and files.adapter in lines[0], result.stderr[-2000:]
    assert "needs PyTorch" in lines[0] and "pip install torch" in lines[0] and ".safetensors" in lines[0]
    assert not (tmp_path / "w").exists()
