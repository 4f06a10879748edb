"""Stage masks select exactly the reference's trainable sets (full size, shapes only)."""

import flax.linen as nn
import pytest

from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.build import param_shapes
from stylecrafter_jax.models.sizes import model_config
from stylecrafter_jax.train.masks import count_by_label, label_params
from stylecrafter_jax.train.stages import stage_rules


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
