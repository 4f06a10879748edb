"""The style adapter: reference sizes, several references, order-free tokens, the scale head, remat."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.build import build_adapter
from stylecrafter_jax.models.style import StyleTransformer, style_multipliers
from tests.conftest import cross_attention_layers


@pytest.fixture(scope="module")
def adapter(tiny_model):
    return build_adapter(tiny_model)


def test_outputs(adapter, tiny_model, tiny_params):
    tokens = jax.random.normal(jax.random.key(0), (2, 5, 64))
    text = jax.random.normal(jax.random.key(1), (2, 77, 64))
    style, scales = adapter.apply({"params": tiny_params["adapter"]}, tokens, text)
    assert style.shape == (2, tiny_model.adapter.style_tokens, 64)
    assert scales.shape == (2, cross_attention_layers(tiny_model)) and float(jnp.max(jnp.abs(scales))) < 1.0  # tanh


def test_several_references_are_their_tokens_concatenated(adapter, tiny_params):
    refs = jax.random.normal(jax.random.key(2), (2, 3, 5, 64))
    text = jax.random.normal(jax.random.key(1), (2, 77, 64))
    apply = jax.jit(lambda t: adapter.apply({"params": tiny_params["adapter"]}, t, text))
    stacked, _ = apply(refs)
    concatenated, _ = apply(refs.reshape(2, 15, 64))
    np.testing.assert_allclose(stacked, concatenated, atol=1e-6)
    # No positional embedding: the order of the image tokens does not matter.
    permuted, _ = apply(refs.reshape(2, 15, 64)[:, ::-1])
    np.testing.assert_allclose(permuted, concatenated, atol=1e-5)


def test_wrong_token_width_is_an_error(adapter, tiny_params):
    with pytest.raises(ShapeError, match="image_tokens: got shape"):
        adapter.apply({"params": tiny_params["adapter"]}, jnp.zeros((1, 5, 32)), jnp.zeros((1, 77, 64)))


def test_multipliers_are_one_plus_scale_times_weight():
    np.testing.assert_allclose(style_multipliers(jnp.array([[-0.5, 0.0, 0.5]]), 2.0), [[1.0, 2.0, 3.0]])


def test_remat_gives_the_same_gradients():
    x = jax.random.normal(jax.random.key(3), (1, 5, 32))
    plain = StyleTransformer(in_dim=32, out_dim=16, num_heads=2, num_tokens=4, n_layers=2)
    params = nn.unbox(plain.init(jax.random.key(4), x))
    grads = [jax.grad(lambda p: jnp.sum(StyleTransformer(in_dim=32, out_dim=16, num_heads=2, num_tokens=4, n_layers=2,
                                                         remat_policy=policy).apply(p, x) ** 2))(params)
             for policy in ("none", "full")]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
