"""OpenCLIP towers: full-size parameter counts, parity with transformers' CLIP, penultimate/EOT/fp16 semantics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from stylecrafter_jax.checkpoints.clip_import import text_params_from_hf, vision_params_from_hf
from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.clip import OpenCLIPTextTower, OpenCLIPVisionTower
from stylecrafter_jax.models.sizes import image_encoder_config, text_encoder_config
from tests.torch_references import hf_text_model, hf_vision_model, numpy_state_dict

SOT, EOT = 49406, 49407


def _count(module, *inputs):
    shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes)))


def test_full_size_parameter_counts_match_the_reference():
    text = OpenCLIPTextTower(**text_encoder_config("full"))
    vision = OpenCLIPVisionTower(**image_encoder_config("full"))
    assert _count(text, jax.ShapeDtypeStruct((1, 77), jnp.int32)) == 354_032_641
    assert _count(vision, jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)) == 632_076_800


def _tokens():
    rng = np.random.default_rng(0)
    tokens = np.zeros((2, 77), np.int32)
    for row, length in enumerate((5, 40)):
        tokens[row, 0] = SOT
        tokens[row, 1:length + 1] = rng.integers(1, SOT, length)
        tokens[row, length + 1] = EOT
    return tokens


@pytest.fixture(scope="module")
def text():
    torch_model = hf_text_model()
    tower = OpenCLIPTextTower(**text_encoder_config("tiny"))
    params = text_params_from_hf(numpy_state_dict(torch_model), tower)
    return torch_model, tower, params, jax.jit(lambda p, t: tower.apply({"params": p}, t))


def test_text_tower_matches_transformers(text):
    torch_model, _, params, apply = text
    tokens = _tokens()
    context, pooled = apply(params, tokens)
    with torch.no_grad():
        out = torch_model(torch.from_numpy(tokens).long(), output_hidden_states=True)
        ref_context = torch_model.text_model.final_layer_norm(out.hidden_states[-2]).numpy()
    assert context.shape == (2, 77, 64) and pooled.shape == (2, 64)
    np.testing.assert_allclose(context, ref_context, atol=1e-4, rtol=0)
    np.testing.assert_allclose(pooled, out.text_embeds.numpy(), atol=1e-4, rtol=0)


def test_text_context_is_penultimate_and_pooled_reads_the_eot_token(text):
    _, _, params, apply = text
    tokens = _tokens()
    context, pooled = apply(params, tokens)
    last_block = jax.tree.map(lambda x: x * 1.5, params["transformer"]["resblocks_1"])
    context2, pooled2 = apply({**params, "transformer": {**params["transformer"], "resblocks_1": last_block}}, tokens)
    np.testing.assert_array_equal(context, context2)
    assert np.abs(pooled - pooled2).max() > 1e-3
    changed = tokens.copy()
    changed[0, 10:] = 7  # padding after the EOT (position 6) of row 0: causal, so earlier positions keep their values
    context3, pooled3 = apply(params, changed)
    np.testing.assert_allclose(context3[0, :10], context[0, :10], atol=1e-6)
    assert np.abs(context3[0, 10:] - context[0, 10:]).max() > 1e-3
    np.testing.assert_allclose(pooled3[0], pooled[0], atol=1e-6)


@pytest.fixture(scope="module")
def vision():
    torch_model = hf_vision_model()
    config = image_encoder_config("tiny")
    exact = OpenCLIPVisionTower(**{**config, "round_to_fp16": False})
    rounded = OpenCLIPVisionTower(**config)
    params = vision_params_from_hf(numpy_state_dict(torch_model), exact)
    pixels = np.random.default_rng(1).normal(size=(2, 28, 28, 3)).astype(np.float32)
    return torch_model, exact, rounded, params, pixels


def test_vision_tower_matches_transformers(vision):
    torch_model, exact, _, params, pixels = vision
    tokens, embeds = jax.jit(lambda p, x: exact.apply({"params": p}, x))(params, pixels)
    with torch.no_grad():
        out = torch_model(torch.from_numpy(pixels).permute(0, 3, 1, 2), output_hidden_states=True)
        hidden = out.last_hidden_state
        ref_tokens = torch.cat([torch_model.vision_model.post_layernorm(hidden[:, :1]), hidden[:, 1:]], 1).numpy()
    assert tokens.shape == (2, 5, 64) and embeds.shape == (2, 64)
    np.testing.assert_allclose(tokens, ref_tokens, atol=1e-4, rtol=0)
    np.testing.assert_allclose(embeds, out.image_embeds.numpy(), atol=1e-4, rtol=0)


def test_raw_token_output_is_the_last_block_of_the_image_to_video_embedder(vision):
    torch_model, exact, _, params, pixels = vision
    raw = OpenCLIPVisionTower(**{**image_encoder_config("tiny"), "token_output": "raw", "round_to_fp16": False})
    tokens, embeds = jax.jit(lambda p, x: raw.apply({"params": p}, x))(params, pixels)
    with torch.no_grad():
        out = torch_model(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    assert tokens.shape == (2, 5, 64) and tokens.dtype == jnp.float32
    np.testing.assert_allclose(tokens, out.last_hidden_state.numpy(), atol=1e-4, rtol=0)  # CLS without ln_post
    np.testing.assert_allclose(embeds, out.image_embeds.numpy(), atol=1e-4, rtol=0)
    style_tokens, _ = exact.apply({"params": params}, pixels)
    assert np.abs(np.asarray(style_tokens[:, 0]) - np.asarray(tokens[:, 0])).max() > 1e-2


def test_vision_tokens_are_rounded_to_float16_and_embeddings_are_not(vision):
    _, exact, rounded, params, pixels = vision
    tokens, embeds = jax.jit(lambda p, x: exact.apply({"params": p}, x))(params, pixels)
    tokens16, embeds16 = jax.jit(lambda p, x: rounded.apply({"params": p}, x))(params, pixels)
    assert tokens16.dtype == jnp.float32
    np.testing.assert_array_equal(tokens16, np.asarray(tokens).astype(np.float16).astype(np.float32))
    assert np.any(np.asarray(tokens16) != np.asarray(tokens))
    np.testing.assert_array_equal(embeds16, embeds)


def test_wrong_input_shapes_raise_shape_errors(text, vision):
    _, tower, params, _ = text
    with pytest.raises(ShapeError, match=r"\(batch, 77\)"):
        tower.apply({"params": params}, np.zeros((1, 76), np.int32))
    _, exact, _, vision_params, _ = vision
    with pytest.raises(ShapeError, match="28, 28, 3"):
        exact.apply({"params": vision_params}, np.zeros((1, 224, 224, 3), np.float32))
