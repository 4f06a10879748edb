"""VAE import: the official key table, official/diffusers layouts, export round trip, safetensors, errors."""

import ast
import csv
import os

import jax
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import load_file

from stylecrafter_jax.checkpoints.key_maps import expected_torch_shapes
from stylecrafter_jax.models.sizes import vae_config
from stylecrafter_jax.checkpoints.vae_import import (VAE_PREFIX, official_vae_key, vae_param_shapes,
                                                     vae_params_from_diffusers, vae_params_from_official,
                                                     vae_params_to_official)
from stylecrafter_jax.errors import CheckpointMismatchError
from stylecrafter_jax.models.vae import AutoencoderKL
from tests.torch_references import diffusers_vae, numpy_state_dict

# A copy of the reference's stylecrafter-keys/vae_model.ckpt_keys.tsv (keys and shapes of the official checkpoint).
KEY_TABLE = os.path.join(os.path.dirname(__file__), "data", "vae_model.ckpt_keys.tsv")


@pytest.fixture(scope="module")
def key_table():
    with open(KEY_TABLE) as f:
        return {row["checkpoint_key"]: (ast.literal_eval(row["torch_shape"]), ast.literal_eval(row["flax_shape"]))
                for row in csv.DictReader(f, delimiter="\t")}


def test_full_size_keys_and_torch_shapes_equal_the_reference_table(key_table):
    shapes = vae_param_shapes(AutoencoderKL(**vae_config("full")))
    expected = {VAE_PREFIX + k: v for k, v in expected_torch_shapes(shapes, official_vae_key).items()}
    assert len(key_table) == 248
    assert expected == {key: torch_shape for key, (torch_shape, _) in key_table.items()}


def test_official_import_of_a_synthetic_full_size_state_dict(key_table):
    """Every table key lands on its own leaf, with the table's Flax shape (mid attention 1x1 convs are Dense here)."""
    state_dict = {key: np.broadcast_to(np.float32(i), torch_shape)  # constant arrays: no memory
                  for i, (key, (torch_shape, _)) in enumerate(key_table.items())}
    state_dict["model.diffusion_model.out.2.bias"] = np.zeros((4,), np.float32)  # other components are not read
    params = vae_params_from_official(state_dict, AutoencoderKL(**vae_config("full")))
    flat = traverse_util.flatten_dict(params, sep="/")
    assert len(flat) == 248
    for i, (key, (_, flax_shape)) in enumerate(key_table.items()):
        leaf = flat[_flax_path(key)]
        is_attention_projection = ".attn_1." in key and key.endswith("weight") and ".norm." not in key
        assert leaf.shape == (flax_shape[2:] if is_attention_projection else flax_shape), key
        assert np.all(leaf == i), key


def _flax_path(key: str) -> str:
    """Flax path of an official VAE key, written independently of the importer."""
    parts = key.removeprefix(VAE_PREFIX).split(".")
    out = []
    for part in parts:
        if part.isdigit():
            out[-1] = f"{out[-1]}_{part}"
        else:
            out.append(part)
    leaf = out.pop()
    out.append({"weight": "scale" if "norm" in out[-1] else "kernel"}.get(leaf, leaf))
    return "/".join(out)


@pytest.fixture(scope="module")
def tiny():
    torch_model = diffusers_vae()
    vae = AutoencoderKL(**vae_config("tiny"))
    state_dict = numpy_state_dict(torch_model)
    return torch_model, vae, state_dict, vae_params_from_diffusers(state_dict, vae)


def test_official_export_round_trips_and_matches_diffusers_tensors(tiny):
    _, vae, diffusers_sd, params = tiny
    official = vae_params_to_official(params)
    assert len(official) == len(diffusers_sd)
    np.testing.assert_array_equal(official["first_stage_model.decoder.up.3.block.0.conv1.weight"],
                                  diffusers_sd["decoder.up_blocks.0.resnets.0.conv1.weight"])
    np.testing.assert_array_equal(official["first_stage_model.encoder.mid.attn_1.q.weight"][:, :, 0, 0],
                                  diffusers_sd["encoder.mid_block.attentions.0.to_q.weight"])
    np.testing.assert_array_equal(official["first_stage_model.encoder.down.0.downsample.conv.weight"],
                                  diffusers_sd["encoder.down_blocks.0.downsamplers.0.conv.weight"])
    again = vae_params_from_official(official, vae)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_diffusers_safetensors_load_without_torch(tiny, tmp_path):
    torch_model, vae, _, params = tiny
    torch_model.save_pretrained(tmp_path, safe_serialization=True)
    loaded = vae_params_from_diffusers(load_file(tmp_path / "diffusion_pytorch_model.safetensors"), vae)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_mismatched_state_dicts_list_missing_unexpected_and_misshaped_keys(tiny):
    _, vae, diffusers_sd, params = tiny
    official = vae_params_to_official(params)
    del official["first_stage_model.quant_conv.bias"]
    official["first_stage_model.encoder.down.0.block.5.conv1.weight"] = np.zeros((32, 32, 3, 3), np.float32)
    official["first_stage_model.decoder.conv_out.weight"] = np.zeros((3, 32, 1, 1), np.float32)
    with pytest.raises(CheckpointMismatchError) as error:
        vae_params_from_official(official, vae)
    message = str(error.value)
    assert "keys under 'first_stage_model.'" in message
    assert "1 missing key(s):\n    quant_conv.bias" in message
    assert "1 unexpected key(s):\n    encoder.down.0.block.5.conv1.weight" in message
    assert "decoder.conv_out.weight: file (3, 32, 1, 1), model (3, 32, 3, 3)" in message
    with pytest.raises(CheckpointMismatchError, match=r"(?s)236 missing.*168 unexpected.*6 mis-shaped"):
        vae_params_from_official(diffusers_sd, AutoencoderKL(**vae_config("full")), prefix="")
