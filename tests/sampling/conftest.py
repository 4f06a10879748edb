"""Shared fixtures of the sampling tests: one tiny video pipeline (VAE latents, 2 steps, 4x32x32), style images."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_video_config():
    """The tiny inference config at 32x32, 4 frames, 2 DDIM steps."""
    from configs.inference import get_config

    config = get_config("tiny")
    config.sampling.steps = 2
    config.sampling.height = config.sampling.width = 32
    return config


@pytest.fixture(scope="session")
def tiny_random_params(tiny_video_config):
    from stylecrafter_jax.sampling.weights import random_params

    return random_params(tiny_video_config.model, seed=0)


@pytest.fixture(scope="session")
def tokenizer():
    from stylecrafter_jax.conditioning.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def video_pipeline(tiny_video_config, tiny_random_params, tokenizer):
    from stylecrafter_jax.sampling.pipeline import SamplingPipeline

    return SamplingPipeline(tiny_video_config.model, tiny_video_config.sampling, tiny_random_params, tokenizer)


@pytest.fixture(scope="session")
def style_sets():
    """Four sets of two 64x64 references in [-1, 1]: (4, 2, 64, 64, 3)."""
    return np.random.default_rng(3).uniform(-1, 1, (4, 2, 64, 64, 3)).astype(np.float32)
