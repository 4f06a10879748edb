"""KL VAE: full-size parameter counts, parity with diffusers' AutoencoderKL, moments, latent helpers, batched video."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from stylecrafter_jax.checkpoints.vae_import import vae_params_from_diffusers
from stylecrafter_jax.errors import ShapeError
from stylecrafter_jax.models.sizes import vae_config
from stylecrafter_jax.models.vae import (LATENT_SCALE, AutoencoderKL, latent_mode, sample_latent, scale_latents,
                                         unscale_latents)
from tests.torch_references import diffusers_vae, numpy_state_dict


def test_full_size_parameter_counts_match_the_reference():
    vae = AutoencoderKL(**vae_config("full"))
    shapes = nn.unbox(jax.eval_shape(vae.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)))
    count = lambda *names: sum(int(np.prod(x.shape)) for n in names for x in jax.tree.leaves(shapes["params"][n]))
    assert count("encoder", "quant_conv", "post_quant_conv", "decoder") == 83_653_863
    assert count("encoder", "quant_conv") == 34_163_664
    assert count("post_quant_conv", "decoder") == 49_490_199
    assert vae.downsample_factor == 8


@pytest.fixture(scope="module")
def vae():
    torch_model = diffusers_vae()
    module = AutoencoderKL(**vae_config("tiny"))
    params = vae_params_from_diffusers(numpy_state_dict(torch_model), module)
    encode = jax.jit(lambda p, x: module.apply({"params": p}, x, method=AutoencoderKL.encode))
    decode = jax.jit(lambda p, z: module.apply({"params": p}, z, method=AutoencoderKL.decode))
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    return torch_model, module, params, encode, decode, images


def test_tiny_vae_is_f8(vae):
    _, module, params, encode, _, images = vae
    mean, logvar = encode(params, images)
    assert module.downsample_factor == 8 and mean.shape == logvar.shape == (2, 4, 4, 4)


def test_moments_and_decoded_images_match_diffusers(vae):
    torch_model, _, params, encode, decode, images = vae
    z = np.random.default_rng(1).normal(size=(2, 4, 4, 4)).astype(np.float32)
    mean, logvar = encode(params, images)
    decoded = decode(params, z)
    with torch.no_grad():
        posterior = torch_model.encode(torch.from_numpy(images).permute(0, 3, 1, 2)).latent_dist
        ref_decoded = torch_model.decode(torch.from_numpy(z).permute(0, 3, 1, 2)).sample.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(mean, posterior.mean.permute(0, 2, 3, 1).numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(logvar, posterior.logvar.permute(0, 2, 3, 1).numpy(), atol=1e-4, rtol=0)
    assert decoded.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(decoded, ref_decoded, atol=1e-4, rtol=0)


def test_logvar_is_clamped_to_minus_30_and_20(vae):
    _, _, params, encode, _, images = vae
    bias = np.asarray(params["quant_conv"]["bias"]).copy()
    bias[4:6], bias[6:] = 1e4, -1e4  # channels 4..7 are the log-variance
    _, logvar = encode({**params, "quant_conv": {**params["quant_conv"], "bias": bias}}, images)
    np.testing.assert_array_equal(logvar[..., :2], 20.0)
    np.testing.assert_array_equal(logvar[..., 2:], -30.0)


def test_sample_mode_and_latent_scale():
    mean = jnp.arange(8.0).reshape(2, 2, 2, 1)
    logvar = jnp.full_like(mean, np.log(4.0))
    key = jax.random.key(3)
    expected = mean + 2.0 * jax.random.normal(key, mean.shape)
    np.testing.assert_allclose(sample_latent(key, mean, logvar), expected, rtol=1e-6)
    np.testing.assert_array_equal(latent_mode(mean, logvar), mean)
    assert LATENT_SCALE == 0.18215
    np.testing.assert_allclose(scale_latents(mean), mean * 0.18215)
    np.testing.assert_allclose(unscale_latents(scale_latents(mean)), mean, rtol=1e-6)


def _convolutions(fn, *args):
    """How many convolutions the traced program of fn(*args) contains (sub-programs included)."""

    def count(jaxpr):
        total = 0
        for eqn in jaxpr.eqns:
            total += eqn.primitive.name == "conv_general_dilated"
            for value in eqn.params.values():
                inner = getattr(value, "jaxpr", value)
                if hasattr(inner, "eqns"):
                    total += count(inner)
        return total

    return count(jax.make_jaxpr(fn)(*args).jaxpr)


def test_video_frames_are_encoded_and_decoded_as_one_batch(vae):
    _, module, params, encode, decode, images = vae
    video = images.reshape(1, 2, 32, 32, 3)

    def video_fn(method):
        return lambda p, x: module.apply({"params": p}, x, method=method)

    per_image = _convolutions(video_fn(AutoencoderKL.encode), params, images[:1])
    assert _convolutions(video_fn(AutoencoderKL.encode_video), params, video) == per_image
    mean, logvar = jax.jit(video_fn(AutoencoderKL.encode_video))(params, video)
    frame_mean, frame_logvar = encode(params, images)
    np.testing.assert_allclose(mean[0], frame_mean, atol=1e-6)
    np.testing.assert_allclose(logvar[0], frame_logvar, atol=1e-6)
    latents = np.asarray(frame_mean).reshape(1, 2, 4, 4, 4)
    per_latent = _convolutions(video_fn(AutoencoderKL.decode), params, latents[0, :1])
    assert _convolutions(video_fn(AutoencoderKL.decode_video), params, latents) == per_latent
    frames = jax.jit(video_fn(AutoencoderKL.decode_video))(params, latents)
    np.testing.assert_allclose(frames[0], decode(params, latents[0]), atol=1e-5)


def test_bad_shapes_raise_shape_errors(vae):
    _, module, params, _, _, _ = vae
    with pytest.raises(ShapeError, match="multiples of 8"):
        module.apply({"params": params}, np.zeros((1, 30, 32, 3), np.float32), method=AutoencoderKL.encode)
    with pytest.raises(ShapeError, match="frames"):
        module.apply({"params": params}, np.zeros((1, 32, 32, 3), np.float32), method=AutoencoderKL.encode_video)
    with pytest.raises(ShapeError, match=r"\(batch, h, w, 4\)"):
        module.apply({"params": params}, np.zeros((1, 4, 4, 3), np.float32), method=AutoencoderKL.decode)
