"""Parity with the official StyleCrafter code on committed data (data/style_parity, made by make_style_parity.py;
its README says how): the official files go through the importers `convert import` runs
(`conversion.check_videocrafter_keys`, `unet_from_official` with a temporal file, `adapter_from_official`), and
our adapter (style tokens, scales), U-Net (video and image mode, with style tokens and text only) and guided
DDIM sampler (latents after each step) must give the official outputs; our exports must be the official files."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylecrafter_jax.checkpoints import conversion, official_import
from stylecrafter_jax.checkpoints.components import components_to_trained_tree, trained_tree_to_components
from stylecrafter_jax.checkpoints.official_keys import UNET_PREFIX
from stylecrafter_jax.diffusion.ddim import make_sampler, sample_keys
from stylecrafter_jax.diffusion.guidance import GuidanceInputs, style_multipliers
from stylecrafter_jax.diffusion.schedule import process_from_config
from stylecrafter_jax.models.build import build_adapter, build_unet
from stylecrafter_jax.sampling.settings import get_sampling_config
from tests.checkpoints.make_style_parity import BATCH, DDIM, latent_noise, parity_model

DATA = os.path.join(os.path.dirname(__file__), "data", "style_parity")
TOLERANCE = 1e-5
DDIM_TOLERANCE = 5e-4
SOURCE = "style parity data"


def _stored(name):
    """The arrays of one stored file, float16 ones as float32."""
    with np.load(os.path.join(DATA, name)) as stored:
        return {key: stored[key].astype(np.float32) if stored[key].dtype == np.float16 else stored[key]
                for key in stored}


@pytest.fixture(scope="module")
def data():
    """(the official files {"videocrafter": model.ckpt, "adapter": adapter_v1.pth}, inputs and outputs)."""
    weights = _stored("weights.npz")
    files = {name: {key.split("/", 1)[1]: value for key, value in weights.items() if key.startswith(name + "/")}
             for name in ("videocrafter", "adapter")}
    return files, _stored("io.npz")


@pytest.fixture(autouse=True)
def highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


def _temporal_file(checkpoint, modules):
    """The flattened temporal file of the official TemporalTransformers `modules`, cut from the checkpoint."""
    prefixes = tuple(f"{UNET_PREFIX}{name}." for name in modules)
    return {key[len(UNET_PREFIX):]: value for key, value in checkpoint.items() if key.startswith(prefixes)}


def _imported(files, modules, model):
    """Our trained tree from the official files, as convert reads them; the checkpoint's own temporal weights
    are zeroed, so only the temporal file can supply them."""
    checkpoint = files["videocrafter"]
    buffers = conversion.check_videocrafter_keys(checkpoint, model, source=SOURCE)
    assert sorted(buffers) == sorted(conversion.DDPM_BUFFERS)
    temporal = _temporal_file(checkpoint, modules)
    stale = {key: np.zeros_like(value) if key[len(UNET_PREFIX):] in temporal else value
             for key, value in checkpoint.items()}
    abstract = conversion.abstract_components(model, names=("unet", "adapter"))
    return components_to_trained_tree({
        "unet": official_import.unet_from_official(stale, abstract["unet"], temporal=temporal, source=SOURCE),
        "adapter": official_import.adapter_from_official(files["adapter"], abstract["adapter"], source=SOURCE)})


@pytest.fixture(scope="module")
def imported(data):
    files, io = data
    model = parity_model()
    return model, _imported(files, io["temporal_modules"], model)


def _channels_last(a):
    return jnp.asarray(np.moveaxis(a, 1, -1))


def _official_layout(a):
    return np.moveaxis(np.asarray(a), -1, 1)


@pytest.fixture(scope="module")
def adapter_outputs(data, imported):
    """Our (style tokens, scales) of the stored style image tokens and text."""
    _, io = data
    model, params = imported
    return jax.jit(build_adapter(model).apply)({"params": params["adapter"]}, io["style_image_tokens"], io["text"])


@pytest.fixture(scope="module")
def guided_ddim(data, imported, adapter_outputs):
    """unet params -> (latents after each step, the U-Net's three branch outputs at the first step), official
    layout, from our guided sampler (one compile): what its model function sees, taken out by a callback."""
    _, io = data
    model, _ = imported
    unet = build_unet(model)
    style, scales = adapter_outputs
    sampling = get_sampling_config("video")
    sampling.update(steps=DDIM["steps"], eta=DDIM["eta"], text_scale=DDIM["text_scale"],
                    style_scale=DDIM["style_scale"])
    seen = {}  # timestep -> (the latent entering that step, the model output of every branch)

    def record(t, x, out):
        seen[int(t)] = (np.asarray(x), np.asarray(out))

    def model_fn(unet_params, x, t, context, style_scales):
        out = unet.apply({"params": unet_params}, x, t, context, style_scales)
        jax.debug.callback(record, t[0], x[:BATCH], out)
        return out

    sampler = make_sampler(model_fn, process_from_config(model), sampling)
    np.testing.assert_array_equal(sampler.coefficients.timesteps, io["ddim/timesteps"])
    keys = sample_keys(DDIM["seed"], np.arange(BATCH))

    def run(unet_params):
        cond = GuidanceInputs(params=unet_params, text=jnp.asarray(io["text"]),
                              empty_text=jnp.asarray(io["empty_text"]), style=style,
                              multipliers=style_multipliers(scales, 1.0))
        final = sampler.sample_from(cond, _channels_last(io["x_T"]), keys)
        jax.effects_barrier()
        visited = [int(t) for t in io["ddim/timesteps"]]
        latents = [seen[t][0] for t in visited[1:]] + [np.asarray(final)]
        return [_official_layout(x) for x in latents], [_official_layout(x) for x in np.split(seen[visited[0]][1], 3)]

    return run


@pytest.fixture(scope="module")
def reversed_temporal(data, imported):
    """Our U-Net parameters from the official files with one temporal attention's value rows reversed."""
    files, io = data
    model, _ = imported
    key = UNET_PREFIX + "input_blocks.1.2.transformer_blocks.0.attn1.to_v.weight"
    checkpoint = dict(files["videocrafter"], **{key: files["videocrafter"][key][::-1]})
    return _imported(dict(files, videocrafter=checkpoint), io["temporal_modules"], model)["unet"]


def test_adapter_matches_the_official_style_transformer_and_scale_encoder(data, adapter_outputs):
    _, io = data
    style, scales = adapter_outputs
    np.testing.assert_allclose(np.asarray(style), io["adapter/style"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(np.asarray(scales), io["adapter/scales"][..., 0], atol=TOLERANCE, rtol=0)


def _assert_unet_outputs(io, mode, with_style, text_only):
    for ours, name in ((with_style, "out_style"), (text_only, "out_text")):
        official = io[f"{mode}/{name}"]
        assert ours.shape == official.shape
        np.testing.assert_allclose(ours, official, atol=TOLERANCE, rtol=0, err_msg=f"{mode} {name}")
    assert np.abs(io[f"{mode}/out_style"] - io[f"{mode}/out_text"]).max() > 100 * TOLERANCE  # style matters


def test_video_unet_matches_the_official_with_style_tokens_and_text_only(data, imported, guided_ddim,
                                                                          reversed_temporal):
    """The first DDIM step's branches: all conditions, style off (multipliers 0: the official call without style
    tokens, that branch being additive) and the empty prompt; the stored official outputs are of the first two."""
    _, io = data
    _, params = imported
    _, (with_style, text_only, _) = guided_ddim(params["unet"])
    _assert_unet_outputs(io, "video", with_style, text_only)
    _, (moved, _, _) = guided_ddim(reversed_temporal)  # the data can tell a temporal attention reversed
    assert np.abs(moved - io["video/out_style"]).max() > 10 * TOLERANCE


def test_image_unet_matches_the_official_unet2d(data, imported, adapter_outputs, reversed_temporal):
    """Image mode (1 frame) skips every temporal layer, as the official UNet2DModel does: a temporal weight
    reversed changes nothing."""
    _, io = data
    model, params = imported
    unet = build_unet(model)

    @jax.jit
    def run(unet_params, x, t, text, style, scales):
        multipliers = style_multipliers(scales, 1.0)
        out = unet.apply({"params": unet_params}, jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                         jnp.tile(jnp.concatenate([text, style], 1), (2, 1, 1)),
                         jnp.concatenate([multipliers, jnp.zeros_like(multipliers)]))
        return jnp.split(out, 2)

    inputs = (_channels_last(io["image_x"]), jnp.asarray(io["t"]), jnp.asarray(io["text"]),
              jnp.asarray(io["adapter/style"]), jnp.asarray(io["adapter/scales"]))
    _assert_unet_outputs(io, "image", *(_official_layout(out) for out in run(params["unet"], *inputs)))
    moved, _ = run(reversed_temporal, *inputs)
    np.testing.assert_allclose(_official_layout(moved), io["image/out_style"], atol=TOLERANCE, rtol=0)


def test_guided_ddim_matches_the_official_sampler_after_every_step(data, imported, guided_ddim):
    _, io = data
    _, params = imported
    # The noise the official sampler was given, to the last bit but one: the normal draw's float32 arithmetic
    # compiles to one-ulp differences across XLA's LLVM optimisation levels.
    np.testing.assert_allclose(latent_noise(DDIM["steps"]), io["ddim/noise"], atol=1e-6, rtol=0)
    latents, _ = guided_ddim(params["unet"])
    for step, (ours, official) in enumerate(zip(latents, io["ddim/latents"])):
        np.testing.assert_allclose(ours, official, atol=DDIM_TOLERANCE, rtol=0, err_msg=f"after DDIM step {step}")


def test_our_exports_are_the_official_files(data, imported):
    """The official modules loaded the stored files strictly, so equal keys and values mean they load ours."""
    files, io = data
    _, params = imported
    components = trained_tree_to_components(params)
    checkpoint = files["videocrafter"]
    aliases = [key for key in checkpoint if official_import.PROCESSOR_ALIAS in key]
    assert aliases  # the merged state dict's processor aliases are there, ignored on import and not exported
    expected = {key: value for key, value in checkpoint.items() if key.startswith(UNET_PREFIX) and key not in aliases}
    for ours, official in ((official_import.unet_to_official(components["unet"]), expected),
                           (official_import.adapter_to_official(components["adapter"]), files["adapter"])):
        assert sorted(ours) == sorted(official)
        assert all(np.array_equal(ours[key], official[key]) for key in official)
    nested = official_import.temporal_to_official(components["unet"])
    assert sorted(nested) == sorted(io["temporal_modules"])
    for name, state in nested.items():  # as T2VFintoneStyleAS.load_pretrained_temporal loads each module
        official = {key[len(name) + 1:]: value for key, value in _temporal_file(checkpoint, [name]).items()}
        assert sorted(state) == sorted(official)
        assert all(np.array_equal(state[key], official[key]) for key in official)
