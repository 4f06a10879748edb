"""Tests of where sampling weights come from: converted directories (round trip, mismatch), export, random."""

import os

import jax
import numpy as np
import pytest

from configs.inference import get_config
from stylecrafter_jax.checkpoints.pretrained import save_pretrained
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError
from stylecrafter_jax.sampling.weights import (abstract_params, from_components, load_params, random_params,
                                               resolve_params, to_components)


@pytest.fixture(scope="module")
def tiny():
    return get_config("tiny")


@pytest.fixture(scope="module")
def saved(tiny, tiny_random_params, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("weights") / "export")
    save_pretrained(directory, to_components(tiny_random_params), {"model": tiny.model.to_dict()})
    return directory


def test_random_params_fit_the_model_and_depend_on_the_seed(tiny, tiny_random_params):
    abstract = abstract_params(tiny.model)
    assert jax.tree.structure(tiny_random_params) == jax.tree.structure(abstract)
    assert all(p.shape == a.shape for p, a in zip(jax.tree.leaves(tiny_random_params), jax.tree.leaves(abstract)))
    assert sorted(tiny_random_params) == ["adapter", "image_encoder", "text_encoder", "unet", "vae"]
    kernel = tiny_random_params["unet"]["input_blocks_1"]["0"]["in_layers_2"]["kernel"]
    assert abs(kernel.std() * np.sqrt(np.prod(kernel.shape[:-1])) - 1) < 0.05
    np.testing.assert_array_equal(tiny_random_params["vae"]["encoder"]["norm_out"]["scale"], 1.0)
    again, other = random_params(tiny.model, 0), random_params(tiny.model, 1)
    np.testing.assert_array_equal(again["adapter"]["scale_predictor"]["scale_emb"],
                                  tiny_random_params["adapter"]["scale_predictor"]["scale_emb"])
    assert not np.array_equal(other["adapter"]["scale_predictor"]["scale_emb"],
                              tiny_random_params["adapter"]["scale_predictor"]["scale_emb"])


def test_components_round_trip(tiny_random_params):
    components = to_components(tiny_random_params)
    assert "processors" in components["adapter"]
    flat = jax.tree_util.tree_flatten_with_path(components["unet"])[0]
    assert not any("processor" in jax.tree_util.keystr(path) for path, _ in flat)
    back = from_components(components)
    assert jax.tree.structure(back) == jax.tree.structure(tiny_random_params)


def test_converted_directory_loads_back_exactly(tiny, tiny_random_params, saved):
    loaded = load_params(saved, tiny.model)
    for got, expected in zip(jax.tree.leaves(loaded), jax.tree.leaves(tiny_random_params)):
        np.testing.assert_array_equal(got, expected)


def test_a_directory_of_another_model_config_is_refused(tiny, saved):
    other = tiny.model.copy_and_resolve_references()
    other.unet.model_channels = 64
    with pytest.raises(CheckpointMismatchError, match="(?s)export.*does not fit the 'tiny' model config.*unet"):
        load_params(saved, other)


def test_missing_components_come_from_the_base_directory(tiny, tiny_random_params, saved, tmp_path):
    partial = str(tmp_path / "partial")
    components = to_components(tiny_random_params)
    save_pretrained(partial, {"adapter": components["adapter"]}, {})
    with pytest.raises(CheckpointMismatchError, match="holds no \\['unet', 'text_encoder', 'image_encoder', 'vae'\\]"):
        load_params(partial, tiny.model)
    loaded = load_params(partial, tiny.model, base=saved)
    for got, expected in zip(jax.tree.leaves(loaded), jax.tree.leaves(tiny_random_params)):
        np.testing.assert_array_equal(got, expected)
    config = tiny.copy_and_resolve_references()
    config.pretrained = saved
    _, line = resolve_params(config, partial)
    assert line == f"weights: checkpoint {partial}, with image_encoder, text_encoder, unet, vae from {saved}"
    with pytest.raises(ConfigError, match="nowhere.*not a directory"):
        load_params(str(tmp_path / "nowhere"), tiny.model)


def test_resolve_prefers_checkpoint_then_export_then_random(tiny, saved, tmp_path):
    config = tiny.copy_and_resolve_references()
    config.workdir = os.path.dirname(saved)  # holds export/
    params, line = resolve_params(config, None)
    assert line == f"weights: the trained model in {saved} (no --checkpoint given)"
    config.workdir = str(tmp_path / "fresh")
    params, line = resolve_params(config, None)
    assert line.startswith("weights: randomly initialised tiny model (seed 0)")
    config.model.size = "full"
    with pytest.raises(ConfigError, match="no --checkpoint given and no trained model"):
        resolve_params(config, None)
