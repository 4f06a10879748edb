"""Parity with the official StyleCrafter code: its U-Net and style adapter at a small config with random
weights, converted through the official-layout importers, must give our outputs within 1e-4 (float32),
and the official modules must load our exports (adapter, temporal file, U-Net) with strict key checks.

Skipped unless STYLECRAFTER_REFERENCE_DIR points at a checkout of github.com/GongyeLiu/StyleCrafter (never
vendored here). The official code runs on the local torch CPU build: without xformers it takes its einsum
path, whose style attention is unscaled, so our U-Net runs with `style_attention_scaled=False`; its
init_attn has 8 heads of `num_head_channels` and its ScaleEncoder a hidden width of 32.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylecrafter_jax.checkpoints.components import components_to_trained_tree, trained_tree_to_components
from stylecrafter_jax.checkpoints.conversion import abstract_components
from stylecrafter_jax.models.sizes import model_config
from stylecrafter_jax.checkpoints.official_import import (adapter_from_official, adapter_to_official,
                                                          temporal_to_official, unet_from_official, unet_to_official)
from stylecrafter_jax.models.build import build_adapter, build_unet
from benchmarks.official import official_style_unet
from tests.torch_references import numpy_state_dict, randomize_

REFERENCE = os.environ.get("STYLECRAFTER_REFERENCE_DIR")
pytestmark = pytest.mark.skipif(not REFERENCE, reason="STYLECRAFTER_REFERENCE_DIR is not set")
TOLERANCE = 1e-4
FRAMES, SIZE, IMAGE_TOKENS = 4, 8, 10


def _model():
    model = model_config("tiny")
    model.unet.init_attn_heads = 8
    model.unet.init_attn_head_dim = model.unet.num_head_channels
    model.unet.style_attention_scaled = False
    model.adapter.scale_mid_dim = 32
    return model


def _unit_scales(module):
    """Norm scales around 1 where the official names do not say "norm" (`in_layers.0`, `out.0`, `ln_1`, ...)."""
    import torch

    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and name.endswith("weight") and "norm" not in name:
                p.add_(1.0)
    return module


@pytest.fixture(scope="module")
def official():
    """The official U-Net with the adapter's processors, and the adapter, random, from the checkout."""
    import torch

    sys.path.insert(0, REFERENCE)
    try:
        from lvdm.modules.encoders.adapter import StyleAdapterDualAttnAS
        from lvdm.modules.networks.openaimodel3d import UNetModel
    finally:
        sys.path.remove(REFERENCE)
    model = _model()
    torch.manual_seed(0)
    unet, adapter = official_style_unet(
        {"UNetModel": UNetModel, "StyleAdapterDualAttnAS": StyleAdapterDualAttnAS}, model)
    return _unit_scales(randomize_(unet, 1)), _unit_scales(randomize_(adapter, 2))


@pytest.fixture(scope="module")
def ours(official):
    unet, adapter = official
    model = _model()
    abstract = abstract_components(model, names=("unet", "adapter"))
    unet_state = {"model.diffusion_model." + k: v for k, v in numpy_state_dict(unet).items()}
    assert any(".attn2.processor." in k for k in unet_state)  # the merged aliases are there, and ignored
    params = components_to_trained_tree({"unet": unet_from_official(unet_state, abstract["unet"]),
                                         "adapter": adapter_from_official(numpy_state_dict(adapter),
                                                                          abstract["adapter"])})
    return model, params


def _inputs(model):
    rng = np.random.default_rng(3)
    return dict(x=rng.standard_normal((1, 4, FRAMES, SIZE, SIZE), np.float32),
                t=np.array([537]),
                text=rng.standard_normal((1, model.unet.text_length, model.unet.context_dim), np.float32),
                image=rng.standard_normal((1, IMAGE_TOKENS, model.adapter.image_dim), np.float32))


def test_unet_output_with_and_without_style_tokens_matches_the_official_code(official, ours):
    import torch

    unet, adapter = official
    model, params = ours
    inputs = _inputs(model)
    with torch.no_grad():
        text, image = torch.from_numpy(inputs["text"]), torch.from_numpy(inputs["image"])
        style = adapter.image_context_model(image)
        scales = adapter.scale_predictor(torch.cat([style, text], dim=1))
        x, t = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["t"])
        reference_style = unet(x, t, context=text, append_to_context=style, scale_scalar=scales).numpy()
        reference_plain = unet(x, t, context=text).numpy()

    our_style, our_scales = jax.jit(build_adapter(model).apply)({"params": params["adapter"]}, inputs["image"],
                                                                inputs["text"])
    np.testing.assert_allclose(our_style, style.numpy(), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(our_scales, scales.numpy()[..., 0], atol=TOLERANCE, rtol=0)
    apply = jax.jit(build_unet(model).apply)
    x = jnp.asarray(inputs["x"].transpose(0, 2, 3, 4, 1))
    ours_style = apply({"params": params["unet"]}, x, inputs["t"], jnp.concatenate([inputs["text"], our_style], 1),
                       1.0 + our_scales)
    ours_plain = apply({"params": params["unet"]}, x, inputs["t"], jnp.asarray(inputs["text"]))
    to_ncthw = lambda y: np.asarray(y).transpose(0, 4, 1, 2, 3)  # noqa: E731
    errors = {"with style": np.abs(to_ncthw(ours_style) - reference_style).max(),
              "without style": np.abs(to_ncthw(ours_plain) - reference_plain).max()}
    print(f"max |ours - official| (output std {reference_style.std():.3f}): {errors}")
    assert np.abs(reference_style - reference_plain).max() > 100 * TOLERANCE  # the style branch matters
    assert max(errors.values()) < TOLERANCE, errors


def test_the_official_modules_load_our_exports_strictly(official, ours):
    import torch

    from lvdm.modules.attention import TemporalTransformer  # already imported by the `official` fixture

    unet, adapter = official
    _, params = ours
    components = trained_tree_to_components(params)
    tensors = lambda state: {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}  # noqa: E731
    before = {k: v.clone() for k, v in adapter.state_dict().items()}
    adapter.load_state_dict(tensors(adapter_to_official(components["adapter"])), strict=True)
    assert all(torch.equal(before[k], v) for k, v in adapter.state_dict().items())
    nested = temporal_to_official(components["unet"])
    temporal = {name: module for name, module in unet.named_modules() if isinstance(module, TemporalTransformer)}
    assert sorted(temporal) == sorted(nested)
    for name, module in temporal.items():  # as T2VFintoneStyleAS.load_pretrained_temporal does
        module.load_state_dict(tensors(nested[name]), strict=True)
    flat = {k.removeprefix("model.diffusion_model."): v for k, v in unet_to_official(components["unet"]).items()}
    result = unet.load_state_dict(tensors(flat), strict=False)
    assert not result.unexpected_keys and all(".attn2.processor." in k for k in result.missing_keys)
