"""The train state's creation on the tiny stage-2 model: base leaves taken as given (never initialised),
a random frozen base without its zero-initialised kernels, trained zero-inits kept, the EMA a copy."""

import jax
import numpy as np
import pytest
from flax import traverse_util

from configs.stage2 import get_config
from stylecrafter_jax.parallel.mesh import create_mesh
from stylecrafter_jax.train.init import create_state, stage_labels
from stylecrafter_jax.train.masks import FROZEN, TRAIN
from stylecrafter_jax.train.optimizer import make_optimizer

GIVEN = ("unet", "input_blocks_1", "0", "in_layers_2", "kernel")  # a frozen ResBlock conv


@pytest.fixture(scope="module")
def created():
    config = get_config("tiny,synthetic")
    with config.unlocked():
        config.train.ema_decay = 0.9
    mesh = create_mesh(config.mesh)
    labels = stage_labels(config)
    tx = make_optimizer(config.train, labels)
    abstract, shardings = create_state(config, tx, labels, mesh, abstract=True)
    leaf = traverse_util.flatten_dict(abstract.params)[GIVEN]
    given = jax.device_put(np.full(leaf.shape, 0.5, np.float32), traverse_util.flatten_dict(shardings.params)[GIVEN])
    state, _ = create_state(config, tx, labels, mesh, base=traverse_util.unflatten_dict({GIVEN: given}))
    return state, given, traverse_util.flatten_dict(labels)


def _kernels(state, labels, label, suffix):
    flat = traverse_util.flatten_dict(state.params)
    return {path: np.asarray(leaf) for path, leaf in flat.items()
            if path[0] == "unet" and labels[path] == label and "/".join(path).endswith(suffix)}


def test_given_base_leaves_are_used_as_they_are(created):
    state, given, _ = created
    leaf = traverse_util.flatten_dict(state.params)[GIVEN]
    np.testing.assert_array_equal(np.asarray(leaf), np.full(given.shape, 0.5, np.float32))
    assert leaf.sharding == given.sharding


def test_random_frozen_base_has_no_zero_kernels_and_trained_zero_inits_stay(created):
    state, _, labels = created
    frozen_heads = _kernels(state, labels, FROZEN, "proj_out/kernel") | _kernels(state, labels, FROZEN, "out_2/kernel")
    assert any(path[1] == "out_2" for path in frozen_heads) and len(frozen_heads) > 2
    for path, kernel in frozen_heads.items():
        assert np.abs(kernel).max() > 0, path
        np.testing.assert_allclose(kernel.std(), 1 / np.sqrt(np.prod(kernel.shape[:-1])), rtol=0.3, err_msg=str(path))
    trained_heads = _kernels(state, labels, TRAIN, "proj_out/kernel")
    assert trained_heads and all(np.all(kernel == 0) for kernel in trained_heads.values())


def test_ema_starts_as_a_copy_of_the_trained_leaves(created):
    state, _, labels = created
    params = traverse_util.flatten_dict(state.params)
    ema = traverse_util.flatten_dict(state.ema)
    assert sorted(ema) == sorted(path for path in params if labels[path] == TRAIN)
    for path, leaf in ema.items():
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(params[path]), err_msg=str(path))
        assert leaf.addressable_shards[0].data.unsafe_buffer_pointer() != \
            params[path].addressable_shards[0].data.unsafe_buffer_pointer()
