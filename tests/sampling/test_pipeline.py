"""Tests of the sampling pipeline on the tiny model: conditioning, per-sample noise, style, decode, image mode,
sharding over a mesh of 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from stylecrafter_jax.conditioning.encoders import decode_video
from stylecrafter_jax.conditioning.preprocess import clip_pixels
from stylecrafter_jax.errors import ConfigError, ShapeError
from stylecrafter_jax.parallel.defaults import mesh_config
from stylecrafter_jax.parallel.mesh import create_mesh
from stylecrafter_jax.parallel.rules import DEFAULT_RULES
from stylecrafter_jax.sampling.pipeline import SamplingPipeline, param_shardings, to_uint8
from stylecrafter_jax.sampling.settings import switch_mode

pytestmark = pytest.mark.heavy  # its tests run first (tests/conftest.py)

PROMPTS = ["a red circle", "two blue squares"]


def test_condition_equals_the_modules_called_one_by_one(video_pipeline, style_sets):
    pipe, params = video_pipeline, video_pipeline.params
    styles = style_sets[:2]  # two samples, two references each
    got = pipe.condition(PROMPTS, styles)

    text_fn = jax.jit(lambda p, tokens: pipe.text_tower.apply({"params": p}, tokens)[0])
    vision_fn = jax.jit(lambda p, pixels: pipe.vision_tower.apply({"params": p}, pixels)[0])
    text = text_fn(params["text_encoder"], jnp.asarray(pipe.tokenizer(PROMPTS)))
    empty = text_fn(params["text_encoder"], jnp.asarray(pipe.tokenizer([""])))
    per_ref = [vision_fn(params["image_encoder"], clip_pixels(jnp.asarray(styles[:, r]), 28)) for r in range(2)]
    image_tokens = jnp.concatenate(per_ref, axis=1)  # (B, 2·5, 64): the references' tokens concatenated
    style, scales = jax.jit(pipe.adapter.apply)({"params": params["adapter"]}, image_tokens, text)
    weight = pipe.sampling.style_weight

    np.testing.assert_allclose(got.text, text, atol=1e-5)
    np.testing.assert_allclose(got.empty_text, empty, atol=1e-5)
    np.testing.assert_allclose(got.style, style, atol=1e-5)
    np.testing.assert_allclose(got.multipliers, (1.0 + scales) * weight, atol=1e-5)
    assert got.multipliers.shape == (2, pipe.unet.num_cross_attention_layers)
    assert got.params is params["unet"]


def test_noise_follows_the_sample_index_not_the_batch_position(video_pipeline, style_sets):
    pipe = video_pipeline
    a = pipe.latents(PROMPTS, style_sets[[0, 1]], [0, 1], seed=7)
    compiled = pipe.sampler._loop._cache_size(), pipe._condition._cache_size()
    swapped = pipe.latents(PROMPTS[::-1], style_sets[[1, 0]], [1, 0], seed=7)
    np.testing.assert_allclose(a[0], swapped[1], rtol=1e-4, atol=1e-4)  # float order only
    np.testing.assert_allclose(a[1], swapped[0], rtol=1e-4, atol=1e-4)
    other_index = pipe.latents(PROMPTS, style_sets[[0, 1]], [5, 1], seed=7)
    np.testing.assert_allclose(other_index[1], a[1], rtol=1e-4, atol=1e-4)
    assert np.abs(np.asarray(other_index[0] - a[0])).mean() > 0.1
    other_seed = pipe.latents(PROMPTS, style_sets[[0, 1]], [0, 1], seed=8)
    assert np.abs(np.asarray(other_seed - a)).mean() > 0.1
    # Same shapes: the calls after the first reused its compiled sampler and conditioning.
    assert (pipe.sampler._loop._cache_size(), pipe._condition._cache_size()) == compiled


def test_style_changes_the_sample_unless_style_weight_is_zero(video_pipeline, style_sets):
    pipe = video_pipeline
    first = pipe.latents(PROMPTS, style_sets[[0, 1]], [0, 1], seed=1)
    second = pipe.latents(PROMPTS, style_sets[[2, 3]], [0, 1], seed=1)
    assert np.abs(np.asarray(first - second)).mean() > 1e-3
    weight = pipe.sampling.style_weight
    pipe.sampling.style_weight = 0.0
    try:
        first = pipe.latents(PROMPTS, style_sets[[0, 1]], [0, 1], seed=1)
        second = pipe.latents(PROMPTS, style_sets[[2, 3]], [0, 1], seed=1)
    finally:
        pipe.sampling.style_weight = weight
    np.testing.assert_allclose(first, second, atol=1e-5)


def test_to_uint8_is_the_official_conversion():
    x = jnp.array([-2.0, -1.0, -0.5, 0.0, 0.999, 1.0, 3.0])
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 63, 127, 254, 255, 255])


def test_decode_is_the_vae_of_all_frames_then_uint8(video_pipeline):
    pipe = video_pipeline
    latents = jax.random.normal(jax.random.key(0), (2,) + pipe.latent_shape)
    got = pipe.decode(latents)
    assert got.dtype == np.uint8 and got.shape == (2, 4, 32, 32, 3)
    video = np.asarray(decode_video(pipe.vae, pipe.params["vae"], latents))
    expected = np.floor((np.clip(video, -1, 1) + 1) / 2 * 255).astype(np.uint8)
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert (got == expected).mean() > 0.99


def test_call_returns_uint8_videos(video_pipeline, style_sets):
    videos = video_pipeline(PROMPTS, style_sets[:2], [0, 1], seed=0)
    assert videos.dtype == np.uint8 and videos.shape == (2, 4, 32, 32, 3)
    assert len(np.unique(videos)) > 10


def test_image_mode_reports_every_step(tiny_video_config, tiny_random_params, tokenizer, style_sets):
    config = tiny_video_config.copy_and_resolve_references()
    switch_mode(config.sampling, config.model, "image")
    config.sampling.steps = 4
    pipe = SamplingPipeline(config.model, config.sampling, tiny_random_params, tokenizer, report_steps=True)
    steps = []
    pipe.on_step = steps.append
    images = pipe(PROMPTS[:1], style_sets[:1, :1], [0], seed=0)
    jax.effects_barrier()
    assert images.dtype == np.uint8 and images.shape == (1, 1, 32, 32, 3)
    assert sorted(steps) == [0, 1, 2, 3]


def test_pixel_space_model_skips_the_vae(tiny_video_config, tiny_random_params, tokenizer):
    config = tiny_video_config.copy_and_resolve_references()
    config.model.latent = "pixels"
    config.model.unet.in_channels = config.model.unet.out_channels = 3
    params = {k: v for k, v in tiny_random_params.items() if k != "vae"}
    pipe = SamplingPipeline(config.model, config.sampling, params, tokenizer)
    assert pipe.latent_shape == (4, 32, 32, 3)
    latents = jax.random.uniform(jax.random.key(1), (1, 4, 32, 32, 3), minval=-1.2, maxval=1.2)
    np.testing.assert_array_equal(pipe.decode(latents), to_uint8(latents))
    with pytest.raises(ConfigError, match="missing components \\['image_encoder'\\]"):
        SamplingPipeline(config.model, config.sampling, {k: v for k, v in params.items() if k != "image_encoder"},
                         tokenizer)


def test_bad_style_batch_shape(video_pipeline, style_sets):
    with pytest.raises(ShapeError, match="style_images"):
        video_pipeline.condition(PROMPTS, style_sets[:2, 0])
    with pytest.raises(ShapeError, match="indices"):
        video_pipeline.latents(PROMPTS, style_sets[:2], [0], seed=0)


def test_on_a_mesh_parameters_and_batches_are_sharded_and_sample_as_on_one_device(
        tiny_video_config, tiny_random_params, tokenizer, video_pipeline, style_sets):
    config = tiny_video_config
    mesh = create_mesh(mesh_config(2, 4, 1))
    pipe = SamplingPipeline(config.model, config.sampling, tiny_random_params, tokenizer, mesh=mesh)
    rows = NamedSharding(mesh, P(("data", "fsdp")))
    # Parameters in the shardings the logical rules give (as in training): the large kernels split over fsdp.
    expected = param_shardings(config.model, mesh, DEFAULT_RULES)
    placed = jax.tree.leaves(jax.tree.map(lambda a, s: a.sharding == s, pipe.params, expected))
    assert len(placed) > 100 and all(placed)
    assert "fsdp" in pipe.params["unet"]["output_blocks_0"]["0"]["in_layers_2"]["kernel"].sharding.spec
    # Three samples are padded to the 8 batch shards; every batch array is split over data x fsdp.
    assert pipe.round_batch(3) == 8 and pipe.round_batch(9) == 16
    cond, count = pipe._conditioned(PROMPTS + ["a green line"], style_sets[:3])
    assert count == 3 and cond.text.shape[0] == 8
    latents, _ = pipe._padded_latents(PROMPTS + ["a green line"], style_sets[:3], [0, 1, 2], seed=7)
    assert latents.shape == (8,) + pipe.latent_shape
    assert latents.sharding.is_equivalent_to(rows, latents.ndim)
    assert {d.id for d in latents.sharding.device_set} == set(range(8))
    pixels = pipe._decode(pipe.params, latents)
    assert pixels.sharding.is_fully_replicated
    # The noise is fold_in(seed, index): one device draws the same samples, up to the order of float sums.
    single = video_pipeline.latents(PROMPTS + ["a green line"], style_sets[:3], [0, 1, 2], seed=7)
    np.testing.assert_allclose(np.asarray(latents)[:3], single, rtol=0, atol=1e-4)


def test_the_sampling_section_chooses_the_solver_and_its_spacing(tiny_video_config, tiny_random_params, tokenizer):
    sampling = tiny_video_config.sampling.copy_and_resolve_references()
    sampling.sampler, sampling.timestep_spacing, sampling.steps = "dpmpp_2m", "uniform_trailing", 4
    pipe = SamplingPipeline(tiny_video_config.model, sampling, tiny_random_params, tokenizer)
    assert pipe.sampler.sampler == "dpmpp_2m"
    np.testing.assert_array_equal(pipe.sampler.coefficients.timesteps, [999, 749, 499, 249])
