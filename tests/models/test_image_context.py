"""The image-to-video projector (Resampler) and the per-frame image-token rule."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.image_context import PerceiverAttention, Resampler, image_context_per_frame
from stylecrafter_jax.models.variants import projector_fields
from tests.conftest import randomize


@pytest.mark.parametrize("variant, tokens", [("videocrafter_i2v", 4), ("dynamicrafter_512", 4 * 4)])
def test_resampler_token_counts(variant, tokens):
    fields = projector_fields(variant, "tiny")
    resampler = Resampler(**fields)
    clip = jax.ShapeDtypeStruct((3, 257, fields["embedding_dim"]), jnp.float32)
    variables = jax.eval_shape(resampler.init, jax.random.key(0), clip)
    out = jax.eval_shape(resampler.apply, variables, clip)
    assert resampler.num_tokens == tokens
    assert out.shape == (3, tokens, fields["output_dim"]) and out.dtype == jnp.float32
    assert nn.unbox(variables)["params"]["latents"].shape == (1, tokens, fields["dim"])


@pytest.mark.parametrize("variant, queries", [("videocrafter_i2v", 16), ("dynamicrafter_256", 256)])
def test_full_size_projector_latents(variant, queries):
    resampler = Resampler(**projector_fields(variant, "full"))
    clip = jax.ShapeDtypeStruct((1, 257, 1280), jnp.float32)
    params = nn.unbox(jax.eval_shape(resampler.init, jax.random.key(0), clip))["params"]
    assert params["latents"].shape == (1, queries, 1024)
    assert params["layers_3"]["0"]["to_kv"]["kernel"].shape == (1024, 1536)
    assert params["layers_3"]["0"]["to_q"]["kernel"].shape == (1024, 768)


def test_resampler_rejects_tokens_of_another_width():
    resampler = Resampler(**projector_fields("videocrafter_i2v", "tiny"))
    with pytest.raises(ShapeError, match="image_tokens: got shape"):
        resampler.init(jax.random.key(0), jnp.zeros((1, 257, 32)))


def _layer_norm(x, p):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def test_perceiver_attention_equals_numpy():
    layer = PerceiverAttention(dim=16, dim_head=4, heads=3)
    rng = np.random.default_rng(0)
    x, latents = rng.standard_normal((2, 5, 16), np.float32), rng.standard_normal((2, 3, 16), np.float32)
    params = randomize(nn.unbox(jax.eval_shape(layer.init, jax.random.key(0), x, latents))["params"])
    out = layer.apply({"params": params}, x, latents)

    xn, ln = _layer_norm(x, params["norm1"]), _layer_norm(latents, params["norm2"])
    heads = lambda y: y.reshape(y.shape[0], y.shape[1], 3, 4).transpose(0, 2, 1, 3)  # noqa: E731
    q = heads(ln @ params["to_q"]["kernel"])
    kv = np.concatenate([xn, ln], axis=1) @ params["to_kv"]["kernel"]
    k, v = heads(kv[..., :12]), heads(kv[..., 12:])  # the first half of to_kv's outputs is K
    logits = (q * 4 ** -0.25) @ (k * 4 ** -0.25).transpose(0, 1, 3, 2)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    merged = (probs @ v).transpose(0, 2, 1, 3).reshape(2, 3, 12)
    np.testing.assert_allclose(out, merged @ params["to_out"]["kernel"], atol=1e-4, rtol=1e-4)


def test_per_frame_rule_splits_only_tokens_per_frame_times_frames():
    b, t, per_frame, d = 2, 3, 4, 5
    tokens = jnp.arange(b * t * per_frame * d, dtype=jnp.float32).reshape(b, t * per_frame, d)
    split = image_context_per_frame(tokens, b, t, per_frame)
    assert split.shape == (b * t, per_frame, d)
    np.testing.assert_array_equal(split[1], tokens[0, per_frame:2 * per_frame])  # frame 1 of sample 0
    np.testing.assert_array_equal(split[t], tokens[1, :per_frame])  # frame 0 of sample 1
    shared = image_context_per_frame(tokens[:, :per_frame], b, t, per_frame)  # 16 tokens, T frames: all see all
    assert shared.shape == (b * t, per_frame, d)
    np.testing.assert_array_equal(shared[t - 1], tokens[0, :per_frame])
    other = image_context_per_frame(tokens[:, :5], b, t, per_frame)
    np.testing.assert_array_equal(other[2], tokens[0, :5])
    explicit = image_context_per_frame(tokens.reshape(b, t, per_frame, d), b, t, per_frame)
    np.testing.assert_array_equal(explicit, split)
