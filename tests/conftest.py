"""Test-session setup: 8 fake CPU devices, no hub access, one XLA compilation cache for the session."""

import os
import shutil
import tempfile

# One compilation cache for the session, its xdist workers and the processes its tests start (they inherit
# these variables), empty at the start and never in HOME: the suite runs cold, but a program that two tests
# (or two runs of one test) compile is compiled once.
XLA_CACHE = os.environ.get("STYLECRAFTER_JAX_TEST_XLA_CACHE") or tempfile.mkdtemp(prefix="stylecrafter_jax_xla_")
os.environ.update(STYLECRAFTER_JAX_TEST_XLA_CACHE=XLA_CACHE, JAX_COMPILATION_CACHE_DIR=XLA_CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                  JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
# LLVM optimisation off: programs compile about twice as fast, and the tiny models run fast enough without it.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # with libtpu installed, jax would probe for TPUs first
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(items):
    """Tests of files marked heavy first, in collection order otherwise: the xdist workers (given whole files in
    this order) start the long files early and finish together."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


def pytest_unconfigure(config):
    """Remove the session's compilation cache (in the controller: xdist workers share it)."""
    if not hasattr(config, "workerinput"):
        shutil.rmtree(XLA_CACHE, ignore_errors=True)


# U-Net overrides of the tiny size for trainer-level tests: one level (no down/upsampling) with attention, whose
# init and step compile faster than the two-level tiny U-Net's.
ONE_LEVEL_UNET = dict(channel_mult=(1,), attention_resolutions=(1,))


def cross_attention_layers(model) -> int:
    """How many spatial cross-attention layers (style-scale and image-weight slots) the `model` section's U-Net has."""
    from stylecrafter_jax.models.build import build_unet

    return build_unet(model).num_cross_attention_layers


@pytest.fixture(scope="session")
def tiny_model():
    """The `model` config section of the tiny size."""
    from stylecrafter_jax.models.sizes import model_config

    return model_config("tiny")


def randomize(shapes, seed: int = 42):
    """Random float32 values for a tree of shapes: kernels ~ N(0, 1/fan_in), norm scales ~ 1 + N(0, 0.1²),
    everything else ~ N(0, 0.1²)."""
    import numpy as np

    from stylecrafter_jax.trees import path_string

    rng = np.random.default_rng(seed)

    def one(path, shape):
        noise = rng.standard_normal(shape.shape).astype(np.float32)
        name = path_string(path)
        if name.endswith("kernel"):
            return noise / np.float32(np.sqrt(max(1, int(np.prod(shape.shape[:-1])))))
        return np.float32(1.0 if name.endswith("scale") else 0.0) + np.float32(0.1) * noise

    return jax.tree_util.tree_map_with_path(one, shapes)


def random_start(config, tx, labels, mesh, seed: int = 42):
    """A numpy TrainState for step tests and the rule-given shardings of `config`'s state on `mesh`, without
    compiling the init: every parameter random (`randomize`: no zero-initialised layer stops a gradient), the
    optimizer state as `tx` starts it, no EMA. Returns (start, shardings)."""
    import flax.linen as nn
    import numpy as np

    from stylecrafter_jax.models.build import param_shapes
    from stylecrafter_jax.train.state import TrainState, create_state

    abstract, shardings = create_state(config, tx, labels, mesh, abstract=True)
    params = randomize(nn.unbox(param_shapes(config.model)), seed)
    start = TrainState(step=np.zeros((), np.int32), params=params, opt_state=tx.init(params), ema=None,
                       rng=jax.random.PRNGKey(seed))
    assert jax.tree.structure(start) == jax.tree.structure(abstract), "the config's state has more than this start"
    return jax.device_get(start), shardings


def encoded_batch(model, batch: int, rng):
    """What the frozen encoders hand a train step, random float32: latents (batch, frames, h, w, 4), the text
    context (batch, 77, context_dim) and 5 style image tokens (batch, 5, image_dim) of the `model` section."""
    import numpy as np

    shapes = {"latents": (batch, model.frames, model.latent_height, model.latent_width, 4),
              "text_context": (batch, 77, model.unet.context_dim), "image_tokens": (batch, 5, model.adapter.image_dim)}
    return {key: rng.standard_normal(shape).astype(np.float32) for key, shape in shapes.items()}


@pytest.fixture(scope="session")
def tiny_params(tiny_model):
    """Tiny {'unet', 'adapter'} parameters with every leaf random (no zero-init), float32, unboxed."""
    import flax.linen as nn

    from stylecrafter_jax.models.build import param_shapes

    return randomize(nn.unbox(param_shapes(tiny_model)))


@pytest.fixture(scope="session")
def tiny_variant():
    """variant -> (tiny `model` config, its random {'unet', 'projector'} parameters) of an image-to-video model."""
    import flax.linen as nn

    from stylecrafter_jax.defaults import image_to_video_config
    from stylecrafter_jax.models.build import param_shapes

    built = {}

    def get(variant: str):
        if variant not in built:
            model = image_to_video_config(variant, "tiny").model
            built[variant] = model, randomize(nn.unbox(param_shapes(model)))
        return built[variant]

    return get
