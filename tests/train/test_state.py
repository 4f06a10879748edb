"""The train state: stage masks select exactly the reference's trainable sets (full size, shapes only); its
creation on the tiny stage-2 model: base leaves taken as given (never initialised), a random frozen base
without its zero-initialised kernels, trained zero-inits kept, the EMA a copy."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import traverse_util

from configs.stage2 import get_config
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.build import param_shapes
from stylecrafter_jax.models.sizes import model_config
from stylecrafter_jax.parallel.mesh import create_mesh
from stylecrafter_jax.train.stages import stage_rules
from stylecrafter_jax.train.state import FROZEN, TRAIN, count_by_label, create_state, label_params, stage_labels
from stylecrafter_jax.train.step import make_optimizer
from tests.conftest import ONE_LEVEL_UNET

GIVEN = ("unet", "input_blocks_1", "0", "in_layers_2", "kernel")  # a frozen ResBlock conv


@pytest.fixture(scope="module")
def created():
    config = get_config("tiny,synthetic")
    with config.unlocked():
        config.train.ema_decay = 0.9
        config.model.unet.update(ONE_LEVEL_UNET)
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


@pytest.fixture(scope="module")
def full_shapes():
    return nn.unbox(param_shapes(model_config("full")))


@pytest.mark.parametrize("stage, trainable", [
    ("stage1", 111_188_161),  # StyleTransformer + ScaleEncoder + 16 style K/V and LayerNorms
    ("stage2", 278_575_232),  # the 17 temporal transformers (with init_attn)
    ("full", 1_144_485_956),  # the base U-Net without the style branches
])
def test_stage_trains_the_reference_set(full_shapes, stage, trainable):
    counts = count_by_label(full_shapes, label_params(full_shapes, stage_rules(stage)))
    assert counts["train"] == trainable
    assert counts["train"] + counts["frozen"] == 1_144_485_956 + 111_188_161


def test_stage2_labels_every_temporal_transformer_and_nothing_else(full_shapes):
    from flax import traverse_util

    labels = traverse_util.flatten_dict(label_params(full_shapes, stage_rules("stage2")), sep="/")
    modules = {"/".join(k.split("/")[:2 if "init_attn_0" in k else 3]) for k, v in labels.items() if v == "train"}
    assert len(modules) == 17
    assert "unet/init_attn_0" in modules and "unet/middle_block/2" in modules and "unet/output_blocks_11/2" in modules
    assert all(m == "unet/init_attn_0" or m.endswith("/2") for m in modules)


def test_unmatched_parameter_is_an_error(full_shapes):
    with pytest.raises(ConfigError, match="matches no stage rule"):
        label_params(full_shapes, ((r"^adapter/", "train"),))
    with pytest.raises(ConfigError, match="label"):
        label_params(full_shapes, ((r".*", "trainable"),))
