"""CLIP import: open_clip key tables, official layouts (VideoCrafter prefix, open_clip .bin), HF safetensors, errors."""

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from stylecrafter_jax.models.sizes import image_encoder_config, text_encoder_config
from stylecrafter_jax.checkpoints.clip_import import (hf_text_key, open_clip_key, text_param_shapes,
                                                      text_params_from_hf, text_params_from_open_clip,
                                                      text_params_to_open_clip, vision_param_shapes,
                                                      vision_params_from_hf, vision_params_from_open_clip,
                                                      vision_params_to_open_clip)
from stylecrafter_jax.checkpoints.key_maps import expected_torch_shapes
from stylecrafter_jax.errors import CheckpointMismatchError
from stylecrafter_jax.models.clip import OpenCLIPTextTower, OpenCLIPVisionTower
from tests.torch_references import hf_text_model, hf_vision_model, numpy_state_dict, open_clip_layout


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_full_size_open_clip_key_tables():
    text = expected_torch_shapes(text_param_shapes(OpenCLIPTextTower(**text_encoder_config("full"))), open_clip_key)
    vision = expected_torch_shapes(vision_param_shapes(OpenCLIPVisionTower(**image_encoder_config("full"))),
                                   open_clip_key)
    assert len(text) == 6 + 24 * 12 and len(vision) == 8 + 32 * 12
    assert text["token_embedding.weight"] == (49408, 1024)
    assert text["positional_embedding"] == (77, 1024)
    assert text["transformer.resblocks.23.attn.in_proj_weight"] == (3072, 1024)
    assert text["transformer.resblocks.0.attn.in_proj_bias"] == (3072,)
    assert text["transformer.resblocks.5.mlp.c_fc.weight"] == (4096, 1024)
    assert text["ln_final.weight"] == (1024,) and text["text_projection"] == (1024, 1024)
    assert text["logit_scale"] == ()
    assert vision["conv1.weight"] == (1280, 3, 14, 14) and vision["class_embedding"] == (1280,)
    assert vision["positional_embedding"] == (257, 1280)
    assert vision["transformer.resblocks.31.attn.in_proj_weight"] == (3840, 1280)
    assert vision["transformer.resblocks.0.mlp.c_proj.weight"] == (1280, 5120)
    assert vision["ln_post.weight"] == (1280,) and vision["proj"] == (1280, 1024)
    assert hf_text_key("transformer/resblocks_3/attn/key/kernel", 2).torch_key == \
        "text_model.encoder.layers.3.self_attn.k_proj.weight"


@pytest.fixture(scope="module")
def towers():
    text_model, vision_model = hf_text_model(), hf_vision_model()
    text_sd, vision_sd = numpy_state_dict(text_model), numpy_state_dict(vision_model)
    text_tower = OpenCLIPTextTower(**text_encoder_config("tiny"))
    vision_tower = OpenCLIPVisionTower(**image_encoder_config("tiny"))
    return dict(text_model=text_model, vision_model=vision_model, text_sd=text_sd, vision_sd=vision_sd,
                text=text_tower, vision=vision_tower,
                text_params=text_params_from_hf(text_sd, text_tower),
                vision_params=vision_params_from_hf(vision_sd, vision_tower))


def test_videocrafter_text_tower_imports_like_the_hf_one_and_exports_back(towers):
    open_clip_text = open_clip_layout(towers["text_sd"], "text")
    checkpoint = {f"cond_stage_model.model.{k}": v for k, v in open_clip_text.items()}
    checkpoint["first_stage_model.encoder.conv_in.weight"] = np.zeros((4, 3, 3, 3), np.float32)
    checkpoint["model.diffusion_model.out.0.weight"] = np.zeros((4,), np.float32)
    checkpoint["betas"] = np.zeros((1000,), np.float32)
    params = text_params_from_open_clip(checkpoint, towers["text"])
    _assert_trees_equal(params, towers["text_params"])
    exported = text_params_to_open_clip(params)
    assert set(exported) == {k for k in checkpoint if k.startswith("cond_stage_model.model.")}
    for key, value in exported.items():
        np.testing.assert_array_equal(value, checkpoint[key], err_msg=key)


def test_open_clip_bin_gives_both_towers(towers):
    text = open_clip_layout(towers["text_sd"], "text")
    visual = {f"visual.{k}": v for k, v in open_clip_layout(towers["vision_sd"], "vision").items()}
    open_clip_bin = {**text, **visual}
    _assert_trees_equal(text_params_from_open_clip(open_clip_bin, towers["text"], prefix=""), towers["text_params"])
    _assert_trees_equal(vision_params_from_open_clip(open_clip_bin, towers["vision"]), towers["vision_params"])
    exported = vision_params_to_open_clip(towers["vision_params"])
    assert set(exported) == set(visual)
    for key, value in exported.items():
        np.testing.assert_array_equal(value, visual[key], err_msg=key)


def test_hf_safetensors_load_without_torch(towers, tmp_path):
    towers["text_model"].save_pretrained(tmp_path / "text", safe_serialization=True)
    towers["vision_model"].save_pretrained(tmp_path / "vision", safe_serialization=True)
    text_sd = load_file(tmp_path / "text" / "model.safetensors")
    vision_sd = load_file(tmp_path / "vision" / "model.safetensors")
    _assert_trees_equal(text_params_from_hf(text_sd, towers["text"]), towers["text_params"])
    _assert_trees_equal(vision_params_from_hf(vision_sd, towers["vision"]), towers["vision_params"])


def test_hf_clip_model_state_dict_serves_both_towers(towers):
    clip_model = {**towers["text_sd"], **towers["vision_sd"], "logit_scale": np.array(4.0, np.float32),
                  "text_model.embeddings.position_ids": np.arange(77)[None]}
    text = text_params_from_hf(clip_model, towers["text"])
    assert float(text["logit_scale"]) == 4.0
    _assert_trees_equal({**text, "logit_scale": towers["text_params"]["logit_scale"]}, towers["text_params"])
    _assert_trees_equal(vision_params_from_hf(clip_model, towers["vision"]), towers["vision_params"])


def test_mismatched_state_dicts_list_missing_unexpected_and_misshaped_keys(towers):
    sd = open_clip_layout(towers["text_sd"], "text")
    del sd["ln_final.bias"]
    sd["transformer.resblocks.0.attn.in_proj_weight"] = np.zeros((192, 32), np.float32)
    sd["transformer.resblocks.9.ln_1.weight"] = np.zeros((64,), np.float32)
    with pytest.raises(CheckpointMismatchError) as error:
        text_params_from_open_clip(sd, towers["text"], prefix="")
    message = str(error.value)
    assert "1 missing key(s):\n    ln_final.bias" in message
    assert "1 unexpected key(s):\n    transformer.resblocks.9.ln_1.weight" in message
    assert "transformer.resblocks.0.attn.in_proj_weight: file (192, 32), model (192, 64)" in message
    with pytest.raises(CheckpointMismatchError, match="missing"):
        vision_params_from_hf(towers["text_sd"], towers["vision"])
    wider = OpenCLIPVisionTower(**{**image_encoder_config("tiny"), "width": 128, "heads": 8})
    with pytest.raises(CheckpointMismatchError, match="mis-shaped"):
        vision_params_from_hf(towers["vision_sd"], wider)
