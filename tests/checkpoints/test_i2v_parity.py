"""Parity with the official DynamiCrafter and VideoCrafter1 code on committed data (data/i2v_parity, made by
make_i2v_parity.py; its README says how): the official weights go through the real importers
(`conversion.check_variant`, the DC256 `framestride_embed` rename, `unet_from_official`,
`projector_from_official`, as `conversion.convert_official` runs them) and our U-Net (image tokens, VDG concat, fs/fps given and defaulted) and both
Resamplers must give the official outputs within 1e-4 (float32, highest matmul precision)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylecrafter_jax.checkpoints import conversion, official_import
from stylecrafter_jax.checkpoints.official_keys import UNET_PREFIX
from stylecrafter_jax.defaults import image_to_video_config
from stylecrafter_jax.models.build import build_projector, build_unet
from tests.checkpoints.make_i2v_parity import (CONTEXT_DIM, DC_TOKENS_PER_FRAME, FRAMES, PROJECTOR_KWARGS, TEXT,
                                               UNET_KWARGS, VC_TOKENS, i2v_state_dict)

DATA = os.path.join(os.path.dirname(__file__), "data", "i2v_parity")
TOLERANCE = 1e-4
VARIANTS = ("dynamicrafter_256", "dynamicrafter_512", "videocrafter_i2v")


@pytest.fixture(scope="module")
def data():
    """(weights, inputs and outputs) as float32 numpy arrays keyed as stored."""
    def load(name):
        with np.load(os.path.join(DATA, name)) as stored:
            return {key: stored[key].astype(np.float32) if stored[key].dtype == np.float16 else stored[key]
                    for key in stored}

    return load("weights.npz"), load("io.npz")


@pytest.fixture(autouse=True)
def highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


def _model(variant):
    """Our tiny config of `variant` at the widths of the official modules make_i2v_parity.py built."""
    model = image_to_video_config(variant, "tiny").model
    dc = variant != "videocrafter_i2v"
    model.unet.update(model_channels=UNET_KWARGS["model_channels"], num_res_blocks=UNET_KWARGS["num_res_blocks"],
                      channel_mult=tuple(UNET_KWARGS["channel_mult"]),
                      attention_resolutions=tuple(UNET_KWARGS["attention_resolutions"]),
                      num_head_channels=UNET_KWARGS["num_head_channels"], context_dim=CONTEXT_DIM,
                      init_attn_heads=8, init_attn_head_dim=UNET_KWARGS["num_head_channels"],
                      image_tokens_per_frame=DC_TOKENS_PER_FRAME if dc else VC_TOKENS)
    model.projector.update(num_queries=DC_TOKENS_PER_FRAME if dc else VC_TOKENS, video_length=FRAMES if dc else 1,
                           **PROJECTOR_KWARGS)
    model.frames = FRAMES
    return model


def _state_dict(weights, prefix):
    return {key[len(prefix):]: value for key, value in weights.items() if key.startswith(prefix)}


def _imported(state_dict, model):
    """The U-Net and projector parameters of an official state dict, as convert's importers read them."""
    conversion.check_variant(state_dict, model, source="i2v parity data")
    renames = official_import.file_renames(state_dict)
    renamed = official_import.rename_prefixes(state_dict, {theirs: ours for ours, theirs in renames.items()})
    abstract = conversion.abstract_components(model, names=("unet", "projector"))
    return (official_import.unet_from_official(renamed, abstract["unet"], source="i2v parity data"),
            official_import.projector_from_official(renamed, abstract["projector"], source="i2v parity data"),
            renames)


def _channels_last(a):
    return jnp.asarray(np.moveaxis(a, 1, -1))


def _unet_outputs(unet):
    """jit(params, inputs) -> (output with fs/fps given, output with it defaulted), channels last: one compile."""
    def run(params, x, t, context, concat, fs):
        call = lambda fps: unet.apply({"params": params}, x, t, context[:, :TEXT], image_context=context[:, TEXT:],  # noqa: E731
                                      concat=concat, fps=fps)
        return call(fs), call(None)

    return jax.jit(run)


def _inputs(io, variant):
    dc = variant != "videocrafter_i2v"
    return (_channels_last(io[f"{variant}/x"]), jnp.asarray(io[f"{variant}/t"]), jnp.asarray(io[f"{variant}/context"]),
            _channels_last(io[f"{variant}/cond"]) if dc else None, jnp.asarray(io[f"{variant}/fs"]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_unet_matches_the_official_with_image_tokens_and_fs(data, variant):
    weights, io = data
    model = _model(variant)
    projector_name = "projector_dynamicrafter" if variant != "videocrafter_i2v" else "projector_videocrafter_i2v"
    state_dict = {**i2v_state_dict(_state_dict(weights, "unet/"), variant), **_state_dict(weights, projector_name + "/")}
    unet_params, _, renames = _imported(state_dict, model)
    assert renames == ({UNET_PREFIX + "fps_embedding.": UNET_PREFIX + "framestride_embed."}
                       if variant == "dynamicrafter_256" else {})
    run = _unet_outputs(build_unet(model))
    inputs = _inputs(io, variant)
    given, default = run(unet_params, *inputs)
    for ours, name in ((given, "out_fs"), (default, "out_default")):
        official = np.moveaxis(io[f"{variant}/{name}"], 1, -1)
        assert ours.shape == official.shape
        np.testing.assert_allclose(np.asarray(ours), official, atol=TOLERANCE, rtol=0, err_msg=f"{variant} {name}")
    if variant == "dynamicrafter_512":  # the data can tell: noise and image latent swapped in the 8-channel input
        kernel = UNET_PREFIX + "input_blocks.0.0.weight"
        swapped = dict(state_dict, **{kernel: np.roll(state_dict[kernel], 4, axis=1)})
        wrong, _ = run(_imported(swapped, model)[0], *inputs)
        assert np.abs(np.asarray(wrong) - np.moveaxis(io[f"{variant}/out_fs"], 1, -1)).max() > 10 * TOLERANCE


@pytest.mark.parametrize("variant", ("dynamicrafter_512", "videocrafter_i2v"))
def test_projector_matches_the_official_resampler(data, variant):
    weights, io = data
    name = "projector_dynamicrafter" if variant != "videocrafter_i2v" else "projector_videocrafter_i2v"
    model = _model(variant)
    params = official_import.projector_from_official(
        _state_dict(weights, name + "/"), conversion.abstract_components(model, names=("projector",))["projector"])
    projector = build_projector(model)
    ours = np.asarray(jax.jit(lambda p, tokens: projector.apply({"params": p}, tokens))(params, io[f"{name}/tokens"]))
    assert ours.shape == io[f"{name}/out"].shape
    np.testing.assert_allclose(ours, io[f"{name}/out"], atol=TOLERANCE, rtol=0)
