"""DinoViT against transformers' PyTorch ViTModel on tiny random weights, and its parameter tree."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from stylecrafter_jax.checkpoints.dino_import import dino_params_from_hf
from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.dino import DinoViT

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)


def tiny_torch_vit(seed: int = 0):
    """A random transformers ViTModel without pooler, weights perturbed away from their init."""
    torch.manual_seed(seed)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, hidden_act="gelu")
    model = transformers.ViTModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def pair():
    torch_model = tiny_torch_vit()
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    return torch_model, dino_params_from_hf(state, DinoViT(**TINY))


def test_matches_transformers_vit(pair):
    torch_model, params = pair
    pixels = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2))).last_hidden_state.numpy()
    cls, hidden = jax.jit(DinoViT(**TINY).apply)({"params": params}, pixels)
    assert hidden.shape == (2, 17, 32) and cls.shape == (2, 32)
    np.testing.assert_allclose(hidden, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(cls, expected[:, 0], atol=1e-5, rtol=0)


def test_param_tree_mirrors_hf_names_with_logical_axes():
    shapes = jax.eval_shape(DinoViT(**TINY).init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32))
    boxed = shapes["params"]
    layer = boxed["encoder"]["layer_1"]
    assert set(layer) == {"layernorm_before", "attention", "layernorm_after", "intermediate", "output"}
    assert set(layer["attention"]["attention"]) == {"query", "key", "value"}
    assert boxed["embeddings"]["patch_embeddings"]["projection"]["kernel"].value.shape == (8, 8, 3, 32)
    assert boxed["embeddings"]["position_embeddings"].value.shape == (1, 17, 32)
    assert layer["intermediate"]["dense"]["kernel"].names == ("embed", "mlp")
    assert boxed["embeddings"]["cls_token"].names == (None, None, "embed")
    assert "pooler" not in nn.unbox(boxed)


def test_rejects_wrong_image_size(pair):
    _, params = pair
    with pytest.raises(ShapeError, match=r"DINO pixels: expected shape \(batch, 32, 32, 3\)"):
        DinoViT(**TINY).apply({"params": params}, np.zeros((1, 48, 48, 3), np.float32))
