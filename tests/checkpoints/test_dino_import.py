"""DINO import from the Hugging Face ViTModel layout: keys, prefixes, strictness, round trip, safetensors."""

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from stylecrafter_jax.checkpoints.dino_import import dino_param_shapes, dino_params_from_hf, dino_params_to_hf, \
    hf_vit_key
from stylecrafter_jax.errors import CheckpointMismatchError
from stylecrafter_jax.models.dino import DinoViT

TINY = DinoViT(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """A ViTModel-layout state dict for TINY, from the expected torch shapes."""
    from stylecrafter_jax.checkpoints.key_maps import expected_torch_shapes

    rng = np.random.default_rng(seed)
    shapes = expected_torch_shapes(dino_param_shapes(TINY), hf_vit_key)
    return {key: rng.standard_normal(shape).astype(np.float32) for key, shape in shapes.items()}


def test_key_names():
    assert hf_vit_key("encoder/layer_11/attention/attention/query/kernel", 2) == (
        "encoder.layer.11.attention.attention.query.weight", "dense", None)
    assert hf_vit_key("embeddings/patch_embeddings/projection/kernel", 4).transform == "conv"
    layernorm = hf_vit_key("encoder/layer_0/layernorm_before/scale", 1)
    assert layernorm.torch_key == "encoder.layer.0.layernorm_before.weight"
    assert hf_vit_key("layernorm/bias", 1).torch_key == "layernorm.bias"
    assert hf_vit_key("embeddings/cls_token", 3) == ("embeddings.cls_token", "as-is", None)


def test_matches_real_transformers_key_set():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64)
    with_pooler = {k: v.numpy() for k, v in transformers.ViTModel(config).state_dict().items()}
    assert any(k.startswith("pooler.") for k in with_pooler)
    params = dino_params_from_hf(with_pooler, TINY)
    exported = dino_params_to_hf(params)
    assert set(exported) == {k for k in with_pooler if not k.startswith("pooler.")}
    for key, value in exported.items():
        np.testing.assert_array_equal(value, with_pooler[key])


def test_round_trip_and_task_prefix():
    state = random_state_dict()
    params = dino_params_from_hf(state, TINY)
    assert params["encoder"]["layer_1"]["attention"]["attention"]["key"]["kernel"].shape == (32, 32)
    np.testing.assert_array_equal(params["encoder"]["layer_1"]["attention"]["attention"]["key"]["kernel"],
                                  state["encoder.layer.1.attention.attention.key.weight"].T)
    exported = dino_params_to_hf(params)
    assert set(exported) == set(state)
    for key in state:
        np.testing.assert_array_equal(exported[key], state[key])
    task = {"vit." + k: v for k, v in state.items()}
    task["classifier.weight"] = np.zeros((10, 32), np.float32)
    again = dino_params_from_hf(task, TINY)
    np.testing.assert_array_equal(again["layernorm"]["scale"], state["layernorm.weight"])


def test_strict_errors_name_the_keys():
    state = random_state_dict()
    del state["encoder.layer.0.output.dense.bias"]
    state["encoder.layer.0.extra.weight"] = np.zeros(3, np.float32)
    state["layernorm.weight"] = np.zeros(5, np.float32)
    with pytest.raises(CheckpointMismatchError) as info:
        dino_params_from_hf(state, TINY)
    message = str(info.value)
    assert "encoder.layer.0.output.dense.bias" in message and "missing" in message
    assert "encoder.layer.0.extra.weight" in message and "unexpected" in message
    assert "layernorm.weight: file (5,), model (32,)" in message


def test_reads_safetensors_file(tmp_path):
    state = random_state_dict(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    params = dino_params_from_hf(load_file(str(tmp_path / "model.safetensors")), TINY)
    np.testing.assert_array_equal(params["embeddings"]["position_embeddings"], state["embeddings.position_embeddings"])
