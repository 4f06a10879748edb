"""U-Net building blocks: temporal attention in frame-isolated mode, GroupNorm over frames."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylecrafter_jax.models.layers import GroupNorm
from stylecrafter_jax.models.unet_layers import TemporalAttention


def test_frame_isolated_temporal_attention_is_to_out_of_to_v():
    layer = TemporalAttention(heads=2, head_dim=8)
    x = jax.random.normal(jax.random.key(1), (3, 4, 16))
    params = nn.unbox(layer.init(jax.random.key(2), x)["params"])
    out = layer.apply({"params": params}, x, True)
    v = x @ params["to_v"]["kernel"]
    np.testing.assert_allclose(out, v @ params["to_out_0"]["kernel"] + params["to_out_0"]["bias"], atol=1e-5)
    assert float(jnp.max(jnp.abs(layer.apply({"params": params}, x, False) - out))) > 1e-3


def _numpy_group_norm(x, groups, eps, axes):
    c = x.shape[-1]
    g = x.reshape(x.shape[:-1] + (groups, c // groups))
    mean = g.mean(axis=axes, keepdims=True)
    var = g.var(axis=axes, keepdims=True)
    return ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)


def test_temporal_group_norm_uses_statistics_over_all_frames():
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 5, 64)).astype(np.float32)
    x[:, 2] += 3.0  # one frame with a different mean: joint and per-frame statistics differ
    norm = GroupNorm(32, 1e-6)
    params = norm.init(jax.random.key(0), x)
    joint = np.asarray(norm.apply(params, x))
    np.testing.assert_allclose(joint, _numpy_group_norm(x, 32, 1e-6, (1, 2, 3, 5)), atol=1e-4)
    per_frame = _numpy_group_norm(x.reshape(8, 3, 5, 64), 32, 1e-6, (1, 2, 4)).reshape(x.shape)
    assert np.abs(joint - per_frame).max() > 0.5
    np.testing.assert_allclose(np.asarray(norm.apply(params, x.reshape(8, 3, 5, 64))).reshape(x.shape),
                               per_frame, atol=1e-4)
