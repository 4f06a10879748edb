"""UNet3D as the image-to-video models (tiny VideoCrafter1 I2V and DynamiCrafter): shapes, the image branch and
its weights, per-frame image tokens, VDG, fps, the TemporalConvBlock, and bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylecrafter_jax.checkpoints.key_maps import flat_shapes
from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.build import build_unet
from stylecrafter_jax.models.unet_layers import TemporalConvBlock
from stylecrafter_jax.models.variants import VARIANTS
from tests.conftest import randomize

pytestmark = pytest.mark.heavy  # its tests run first (tests/conftest.py)

B, T, H, W = 2, 4, 8, 8  # the tiny latent; the tiny projector has 4 queries (per frame for DynamiCrafter)
TOKENS = 4


@pytest.fixture(scope="module")
def dc256(tiny_variant):
    """The tiny DynamiCrafter 256 (VDG, frame stride, learned image-attention weights): module, params, apply."""
    model, params = tiny_variant("dynamicrafter_256")
    unet = build_unet(model)
    apply = jax.jit(lambda p, x, t, c, kw: unet.apply({"params": p}, x, t, c, **kw))
    return unet, params["unet"], apply


@pytest.fixture(scope="module")
def inputs():
    keys = jax.random.split(jax.random.key(0), 4)
    return dict(x=jax.random.normal(keys[0], (B, T, H, W, 4)), t=jnp.array([999, 21]),
                context=jax.random.normal(keys[1], (B, 77, 64)),
                image=jax.random.normal(keys[2], (B, TOKENS * T, 64)),
                concat=jax.random.normal(keys[3], (B, T, H, W, 4)))


def _branches(inputs, **changes):
    kw = dict(image_context=inputs["image"], image_weight=jnp.ones((B,)), concat=inputs["concat"],
              fps=jnp.array([3, 5]))
    kw.update(changes)
    return kw


def _differs(a, b):
    return float(jnp.max(jnp.abs(a - b))) > 1e-3


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes_of_every_variant(tiny_variant, variant):
    model, params = tiny_variant(variant)
    unet = build_unet(model)
    vdg = variant.startswith("dynamicrafter")
    tokens = TOKENS * (T if vdg else 1)
    kw = dict(image_context=jax.ShapeDtypeStruct((B, tokens, 64), jnp.float32), fps=jnp.array([8, 8]))
    if vdg:
        kw["concat"] = jax.ShapeDtypeStruct((B, T, H, W, 4), jnp.float32)
    out = jax.eval_shape(lambda p, x, **k: unet.apply({"params": p}, x, jnp.array([1, 2]),
                                                       jnp.zeros((B, 77, 64)), **k),
                         params["unet"], jax.ShapeDtypeStruct((B, T, H, W, 4), jnp.float32), **kw)
    assert out.shape == (B, T, H, W, 4) and out.dtype == jnp.float32
    assert ("concat" in kw) == (unet.in_channels == 8)


def test_videocrafter_i2v_forward(tiny_variant, inputs):
    model, params = tiny_variant("videocrafter_i2v")
    unet = build_unet(model)
    apply = jax.jit(lambda p, image: unet.apply({"params": p}, inputs["x"], inputs["t"], inputs["context"],
                                                image_context=image))
    out = apply(params["unet"], inputs["image"][:, :TOKENS])
    assert out.shape == (B, T, H, W, 4) and np.isfinite(np.asarray(out)).all()
    assert _differs(out, apply(params["unet"], inputs["image"][:, TOKENS:2 * TOKENS]))


def test_image_weight_zero_equals_text_only(dc256, inputs):
    _, params, apply = dc256
    args = (params, inputs["x"], inputs["t"], inputs["context"])
    text_only = apply(*args, _branches(inputs, image_context=None, image_weight=None))
    gated = apply(*args, _branches(inputs, image_weight=jnp.zeros((B,))))
    np.testing.assert_allclose(gated, text_only, atol=1e-5, rtol=1e-5)
    assert _differs(apply(*args, _branches(inputs)), text_only)
    # Without image tokens the image K/V (and alpha) are never read.
    perturbed = jax.tree_util.tree_map_with_path(
        lambda p, v: v + 1.0 if "_ip" in jax.tree_util.keystr(p) or "alpha" in jax.tree_util.keystr(p) else v, params)
    np.testing.assert_array_equal(apply(perturbed, *args[1:], _branches(inputs, image_context=None,
                                                                        image_weight=None)), text_only)


def test_learned_alpha_weights_the_image_branch(dc256, inputs):
    unet, params, apply = dc256
    args = (inputs["x"], inputs["t"], inputs["context"])
    off = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.full_like(v, -20.0) if jax.tree_util.keystr(p).endswith("['alpha']") else v, params)
    alphas = [p for p, _ in jax.tree_util.tree_leaves_with_path(params) if "alpha" in jax.tree_util.keystr(p)]
    assert len(alphas) == unet.num_cross_attention_layers
    text_only = apply(params, *args, _branches(inputs, image_context=None, image_weight=None))
    np.testing.assert_allclose(apply(off, *args, _branches(inputs)), text_only, atol=1e-5, rtol=1e-5)


def test_per_frame_image_tokens(dc256, inputs):
    _, params, apply = dc256
    args = (params, inputs["x"], inputs["t"], inputs["context"])
    split = apply(*args, _branches(inputs))
    explicit = apply(*args, _branches(inputs, image_context=inputs["image"].reshape(B, T, TOKENS, 64)))
    np.testing.assert_allclose(split, explicit, atol=1e-5, rtol=1e-5)
    # Frame i reads its own tokens [4i, 4i+4): giving every frame those of frame 0 changes the output.
    frame0 = jnp.repeat(inputs["image"][:, None, :TOKENS], T, axis=1)
    assert _differs(apply(*args, _branches(inputs, image_context=frame0)), split)


def test_fps_and_visual_detail_guidance_reach_the_output(dc256, inputs):
    unet, params, apply = dc256
    args = (params, inputs["x"], inputs["t"], inputs["context"])
    base = apply(*args, _branches(inputs))
    assert _differs(apply(*args, _branches(inputs, fps=jnp.array([6, 5]))), base)
    assert _differs(apply(*args, _branches(inputs, concat=inputs["concat"] * 0.0)), base)
    default = apply(*args, _branches(inputs, fps=jnp.full((B,), unet.default_fps)))
    np.testing.assert_array_equal(apply(*args, _branches(inputs, fps=None)), default)
    first = inputs["concat"][:, :1]
    np.testing.assert_allclose(apply(*args, _branches(inputs, concat=first)),
                               apply(*args, _branches(inputs, concat=jnp.repeat(first, T, axis=1))),
                               atol=1e-5, rtol=1e-5)


def _numpy_temporal_conv_block(x, params, groups):
    def gn(h, p):
        g = h.reshape(h.shape[:-1] + (groups, h.shape[-1] // groups))
        mean, var = g.mean(axis=(1, 2, 3, 5), keepdims=True), g.var(axis=(1, 2, 3, 5), keepdims=True)
        return ((g - mean) / np.sqrt(var + 1e-5)).reshape(h.shape) * p["scale"] + p["bias"]

    h = x
    for i, conv in ((1, 2), (2, 3), (3, 3), (4, 3)):
        h = gn(h, params[f"conv{i}_0"])
        h = h / (1 + np.exp(-h))
        kernel, bias = params[f"conv{i}_{conv}"]["kernel"][:, 0, 0], params[f"conv{i}_{conv}"]["bias"]
        padded = np.pad(h, ((0, 0), (1, 1), (0, 0), (0, 0), (0, 0)))
        h = sum(padded[:, k:k + h.shape[1]] @ kernel[k] for k in range(3)) + bias
    return x + h


def test_temporal_conv_block_is_the_identity_at_init_and_matches_numpy():
    block = TemporalConvBlock(channels=8, norm_groups=4)
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 2, 8)).astype(np.float32)
    params = nn.unbox(block.init(jax.random.key(0), x))["params"]
    assert params["conv4_3"]["kernel"].shape == (3, 1, 1, 8, 8)
    np.testing.assert_array_equal(block.apply({"params": params}, x), x)
    random = randomize(params)
    out = np.asarray(block.apply({"params": random}, x))
    np.testing.assert_allclose(out, _numpy_temporal_conv_block(x, random, 4), atol=1e-4, rtol=1e-4)
    assert np.abs(out - x).max() > 1e-2


@pytest.mark.parametrize("change, message", [
    (dict(x=(B, T, H, W, 8)), "x: got shape"),
    (dict(context=(B, 10, 64)), "context: got shape"),
    (dict(image_context=(B, 16, 32)), "image_context: got shape"),
    (dict(concat=(B, T, H, W, 3)), "concat: got"),
    (dict(concat=None), "concat: got None"),
    (dict(fps=(3,)), "fps: got shape"),
    (dict(image_weight=(B, 2)), "image_weight: got shape"),
])
def test_bad_input_names_the_argument(dc256, inputs, change, message):
    unet, params, _ = dc256
    args = dict(x=inputs["x"], context=inputs["context"], **_branches(inputs))
    for name, shape in change.items():
        args[name] = None if shape is None else jnp.zeros(shape)
    with pytest.raises(ShapeError, match=message):
        unet.apply({"params": params}, args.pop("x"), inputs["t"], args.pop("context"), **args)


def test_branches_the_unet_lacks_are_refused(tiny_model, tiny_params, inputs):
    unet = build_unet(tiny_model)  # StyleCrafter: no image K/V, no VDG, no fps embedding
    args = ({"params": tiny_params["unet"]}, inputs["x"], inputs["t"], inputs["context"])
    for name, value in (("image_context", inputs["image"]), ("concat", inputs["concat"]), ("fps", jnp.array([8, 8]))):
        with pytest.raises(ShapeError, match=f"{name}: this U-Net"):
            unet.apply(*args, **{name: value})


def test_style_and_image_branches_compose_in_one_unet(tiny_model, inputs):
    model = tiny_model.copy_and_resolve_references()
    model.unet.update(image_cross_attention=True, image_tokens_per_frame=TOKENS)
    style_unet, both_unet = build_unet(tiny_model), build_unet(model)
    x, t = inputs["x"], inputs["t"]
    context = jnp.concatenate([inputs["context"], jax.random.normal(jax.random.key(5), (B, 4, 64))], axis=1)
    shapes = lambda unet: jax.eval_shape(unet.init, jax.random.key(0), x, t, context)["params"]  # noqa: E731
    style_paths, both = set(flat_shapes(shapes(style_unet))), nn.unbox(shapes(both_unet))
    added = set(flat_shapes(both)) - style_paths
    assert len(added) == 2 * style_unet.num_cross_attention_layers
    assert all(p.endswith(("attn2/to_k_ip/kernel", "attn2/to_v_ip/kernel")) for p in added)
    params = randomize(both)
    apply = jax.jit(lambda p, c, **kw: both_unet.apply({"params": p}, x, t, c, **kw))
    style_only = apply(params, context)
    image = inputs["image"][:, :TOKENS]
    assert _differs(apply(params, context, image_context=image, image_weight=jnp.ones((B,))), style_only)
    np.testing.assert_allclose(apply(params, context, image_context=image, image_weight=jnp.zeros((B,))), style_only,
                               atol=1e-5, rtol=1e-5)

