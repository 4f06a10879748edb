"""The attention entry point: kernels agree, dispatch falls back, relative-position attention equals the
reference formula evaluated directly."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AbstractDevice, AbstractMesh, AxisType
from jax.sharding import PartitionSpec as P

from stylecrafter_jax.models.attention import (_splash_attention, _xla_attention, choose_implementation,
                                               dot_product_attention, relative_position_attention,
                                               relative_position_index, split_spec, target_platform)
from stylecrafter_jax.parallel.mesh import MESH_AXES, create_mesh


def _qkv(shape, seed=0):
    return [jax.random.normal(k, shape) for k in jax.random.split(jax.random.key(seed), 3)]


def test_xla_attention_equals_numpy_softmax():
    q, k, v = _qkv((2, 5, 3, 8))
    out = dot_product_attention(q, k, v, scale=8 ** -0.5)
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) * 8 ** -0.5
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum("bhqk,bkhd->bqhd", probs, v), atol=1e-5)


def test_splash_kernel_equals_xla_in_interpret_mode():
    q, k, v = _qkv((1, 128, 2, 64))
    np.testing.assert_allclose(_splash_attention(q, k, v, scale=0.125, interpret=True),
                               _xla_attention(q, k, v, scale=0.125, mask=None), atol=1e-5)


@pytest.mark.parametrize("requested, platform, dtype, lengths, splittable, expected", [
    ("auto", "cpu", jnp.float32, (128, 128), True, "xla"),
    ("auto", "gpu", jnp.bfloat16, (2560, 77), True, "cudnn"),
    ("auto", "gpu", jnp.float32, (2560, 77), True, "xla"),  # cuDNN flash needs half precision
    ("auto", "tpu", jnp.bfloat16, (2560, 2560), True, "splash"),
    ("auto", "tpu", jnp.bfloat16, (2560, 77), True, "xla"),  # 77 text tokens: not a multiple of 128
    ("auto", "tpu", jnp.bfloat16, (2560, 2560), False, "xla"),  # the mesh does not divide batch or heads
    ("splash", "cpu", jnp.float32, (128, 128), True, "xla"),  # the real kernel only on TPU
    ("splash_interpret", "cpu", jnp.float32, (128, 128), True, "splash_interpret"),
    ("splash_interpret", "cpu", jnp.float32, (128, 64), True, "xla"),
    ("cudnn", "cpu", jnp.bfloat16, (64, 64), True, "xla"),
    ("xla", "gpu", jnp.bfloat16, (64, 64), True, "xla"),
])
def test_dispatch_and_fallback(requested, platform, dtype, lengths, splittable, expected):
    assert choose_implementation(requested, platform=platform, dtype=dtype, q_len=lengths[0], kv_len=lengths[1],
                                 head_dim=64, splittable=splittable) == expected


def test_splash_interpret_on_a_mesh_runs_in_shard_map_and_falls_back_where_heads_do_not_divide():
    mesh = create_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    attend = jax.jit(lambda q, k, v: dot_product_attention(q, k, v, scale=0.25, implementation="splash_interpret"))
    with jax.set_mesh(mesh):
        for heads, kernel in ((2, True), (3, False)):  # 3 heads do not split over tensor=2: xla
            q, k, v = _qkv((4, 128, heads, 16))
            jaxpr = str(jax.make_jaxpr(attend)(q, k, v))
            assert ("pallas_call" in jaxpr, "shard_map" in jaxpr) == (kernel, kernel)
            np.testing.assert_allclose(attend(q, k, v), _xla_attention(q, k, v, scale=0.25, mask=None), atol=1e-5)


def _abstract_mesh(platform, shape=(2, 2, 2)):
    device = AbstractDevice(device_kind=f"fake {platform}", num_cores=1, platform=platform)
    return AbstractMesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, abstract_device=device)


@pytest.mark.parametrize("platform, expected", [("tpu", "splash"), ("gpu", "cudnn"), ("cpu", "xla")])
def test_auto_follows_the_platform_of_the_mesh_in_context(platform, expected):
    assert target_platform() == jax.default_backend() == "cpu"  # no mesh: the host's backend
    with jax.sharding.use_abstract_mesh(_abstract_mesh(platform)):
        assert target_platform() == platform
        assert choose_implementation("auto", platform=target_platform(), dtype=jnp.bfloat16, q_len=256,
                                     kv_len=256, head_dim=64) == expected


def test_split_spec_follows_the_rules_and_refuses_what_does_not_divide():
    mesh = _abstract_mesh("tpu")
    assert split_spec(AbstractMesh((), ()), batch=3, heads=5) == P()
    # No rules in context: the default ones (batch over data and fsdp, heads over tensor).
    assert split_spec(mesh, batch=8, heads=4) == P(("data", "fsdp"), None, ("tensor",), None)
    assert split_spec(mesh, batch=6, heads=4) is None
    assert split_spec(mesh, batch=8, heads=5) is None
    with nn.logical_axis_rules((("activation_batch", "data"), ("activation_heads", None))):
        assert split_spec(mesh, batch=2, heads=5) == P(("data",), None, None, None)


def test_unknown_implementation_is_an_error():
    with pytest.raises(ValueError, match="flash3"):
        choose_implementation("flash3", platform="cpu", dtype=jnp.float32, q_len=8, kv_len=8, head_dim=64)


def test_relative_position_attention_equals_the_reference_formula():
    n, t, heads, d, max_distance = 2, 6, 2, 4, 3  # t > max_distance: the clamp matters
    q, k, v = [np.asarray(a) for a in _qkv((n, t, heads, d), seed=1)]
    table_k, table_v = [np.asarray(a) for a in jax.random.normal(jax.random.key(2), (2, 2 * max_distance + 1, d))]
    out = np.asarray(relative_position_attention(q, k, v, table_k, table_v, scale=d ** -0.5,
                                                 max_distance=max_distance))
    expected = np.zeros_like(out)
    for b in range(n):
        for h in range(heads):
            for i in range(t):
                rows = [min(max(j - i, -max_distance), max_distance) + max_distance for j in range(t)]
                logits = np.array([(q[b, i, h] @ k[b, j, h] + q[b, i, h] @ table_k[rows[j]]) * d ** -0.5
                                   for j in range(t)])
                p = np.exp(logits - logits.max())
                p /= p.sum()
                expected[b, i, h] = sum(p[j] * (v[b, j, h] + table_v[rows[j]]) for j in range(t))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert relative_position_index(16, 16)[0, 15] == 31 and relative_position_index(4, 2)[3, 0] == 0
