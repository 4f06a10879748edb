"""Each stage's config file spells out its run; the package's factories are stage-neutral."""

import pytest

from configs.stage1 import get_config as stage1
from configs.stage2 import get_config as stage2
from configs.toy import get_config as toy
from stylecrafter_jax.defaults import base_config


def test_each_stage_file_sets_its_own_stage_rates_steps_and_data():
    one, two = stage1(), stage2()
    assert (one.stage, one.train.steps, one.train.learning_rate, one.train.weight_decay) == ("stage1", 40_000, 5e-5, 0.0)
    assert (two.stage, two.train.steps, two.train.learning_rate, two.train.weight_decay) == ("stage2", 20_000, 1e-5, 0.01)
    assert (one.data.kind, one.data.images.batch_size, one.data.images.size) == ("images", 256, (512, 512))
    assert (two.data.kind, two.data.images.batch_size, two.data.videos.batch_size) == ("mixed", 128, 8)
    assert one.workdir == "runs/stage1-full" and two.workdir == "runs/stage2-full"


@pytest.mark.parametrize("get_config", [stage1, stage2])
def test_the_tiny_and_synthetic_blocks_shrink_the_data_and_switch_its_source(get_config):
    full, tiny = get_config(), get_config("tiny,synthetic")
    assert full.data.images.source == full.data.videos.source == "tfds"
    assert tiny.data.images.source == tiny.data.videos.source == "synthetic"
    assert (tiny.data.images.batch_size, tiny.data.images.size, tiny.data.cached.batch_size) == (8, (64, 64), 8)
    assert tiny.model.size == "tiny" and tiny.train.steps == full.train.steps


def test_factories_are_stage_neutral_and_toy_quick_only_shortens():
    assert base_config("tiny", "stage1").train.to_dict() == base_config("tiny", "stage2").train.to_dict()
    assert base_config("full", "stage1").data.to_dict() == base_config("full", "stage2").data.to_dict()
    full, quick = toy(), toy("quick")
    assert (quick.workdir, quick.toy.base.steps, quick.toy.adapter.steps, quick.toy.eval.samples) == (
        "runs/toy-quick", 200, 100, 16)
    assert (full.toy.base.steps, full.toy.adapter.steps, full.toy.eval.samples) == (3000, 1000, 96)
