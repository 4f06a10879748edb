"""The summary command: exact reference parameter counts at full size (StyleCrafter and the image-to-video
models), stage trainable counts, FLOPs."""

import json
import subprocess
import sys

import flax.linen as nn
import pytest

from configs.dynamicrafter import get_config as dynamicrafter
from configs.stage1 import get_config as stage1
from configs.stage2 import get_config as stage2
from configs.videocrafter_i2v import get_config as videocrafter_i2v
from stylecrafter_jax.models.build import param_shapes
from stylecrafter_jax.summary import component_counts, main, stage_trainable_counts, summarize
from tests.conftest import cross_attention_layers

UNET, ADAPTER, ENCODERS = 1_144_485_956, 111_188_161, 83_653_863 + 354_032_641 + 632_076_800


@pytest.fixture(scope="module")
def full_stage1():
    return summarize(stage1())


def test_full_model_counts_equal_the_reference(full_stage1):
    assert full_stage1["components"] == {
        "unet": UNET, "unet.temporal": 278_575_232,
        "adapter": ADAPTER, "adapter.style_transformer": 60_358_400, "adapter.scale_encoder": 25_245_761,
        "adapter.style_kv": 25_584_000,
        "vae": 83_653_863, "text_encoder": 354_032_641, "image_encoder": 632_076_800,
    }
    assert full_stage1["trainable"] == ADAPTER
    assert full_stage1["frozen"] == UNET + ENCODERS


def test_full_forward_flops_match_the_reference(full_stage1):
    # The reference counts 10.923 TFLOP with padded convolutions; XLA counts only the taps inside the
    # image (3x3 convs at 40x64 lose ~2.7%), so it reports ~1.6% less.
    assert 10.6e12 < full_stage1["unet_forward_flops"] < 10.95e12


def test_stage2_trains_the_temporal_transformers():
    summary = summarize(stage2())
    assert summary["trainable"] == 278_575_232
    assert summary["frozen"] == UNET + ADAPTER - 278_575_232 + ENCODERS


def test_json_output_of_the_command():
    out = subprocess.run([sys.executable, "-m", "stylecrafter_jax.summary", "--config=configs/stage2.py:tiny",
                          "--json"], capture_output=True, text=True, check=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"components", "trainable", "frozen", "unet_forward_flops"}
    assert summary["trainable"] == summary["components"]["unet.temporal"] > 0
    assert summary["unet_forward_flops"] > 0


I2V_UNET, DC_UNET = 1_438_843_460, 1_438_854_980
I2V_COMMON = {"unet.temporal": 278_431_616, "unet.temporal_conv": 266_891_520, "unet.image_kv": 25_559_040}


# Trainable counts of the image-to-video stages (P + image K/V; P + the U-Net without its temporal layers;
# P + the whole U-Net): tests/train/test_i2v_stages.py derives them from the reference's sets.
DC_STAGES = {"dc_projector": 74_346_496, "dc_adapt": 942_319_300, "dc_joint": 942_319_300,
             "dc_finetune": 1_487_642_436}
DC256_STAGES = {"dc_projector": 74_346_496, "dc_adapt": 942_319_316, "dc_joint": 942_319_316,
                "dc_finetune": 1_487_642_452}


@pytest.mark.parametrize("get_config, arg, unet, image_kv, projector, stages", [
    (videocrafter_i2v, None, I2V_UNET, 25_559_040, 48_541_696, {"vc_i2v": 74_100_736}),
    (dynamicrafter, "256", DC_UNET + 16, 25_559_040 + 16, 48_787_456, DC256_STAGES),
    (dynamicrafter, "512", DC_UNET, 25_559_040, 48_787_456, DC_STAGES),
    (dynamicrafter, "1024", DC_UNET, 25_559_040, 48_787_456, DC_STAGES),
    (dynamicrafter, "512_interp", DC_UNET, 25_559_040, 48_787_456, {**DC_STAGES, "dc_interp": 1_487_642_436}),
])
def test_image_to_video_counts_equal_the_reference(get_config, arg, unet, image_kv, projector, stages):
    config = get_config(arg)
    shapes = nn.unbox(param_shapes(config.model))
    assert component_counts(shapes) == {**I2V_COMMON, "unet": unet, "unet.image_kv": image_kv, "projector": projector}
    assert stage_trainable_counts(shapes, config.model.variant) == stages


def test_json_output_of_an_image_to_video_config():
    out = subprocess.run([sys.executable, "-m", "stylecrafter_jax.summary", "--config=configs/dynamicrafter.py:256,tiny",
                          "--json"], capture_output=True, text=True, check=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    components = summary["components"]
    assert {"unet", "unet.temporal_conv", "unet.image_kv", "projector", "image_encoder"} <= set(components)
    assert not any(name.startswith("adapter") for name in components)
    spatial = components["unet"] - components["unet.temporal"] - components["unet.temporal_conv"]
    alphas = cross_attention_layers(dynamicrafter("256,tiny").model)  # one learned α per layer, frozen
    assert summary["stages"] == {
        "dc_projector": components["projector"] + components["unet.image_kv"] - alphas,
        "dc_adapt": components["projector"] + spatial, "dc_joint": components["projector"] + spatial,
        "dc_finetune": components["projector"] + components["unet"]}


def test_a_missing_or_bad_config_is_one_error_line(capsys):
    assert main(["summary", "--config=configs/missing.py"]) == 2
    assert capsys.readouterr().err == "error: --config 'configs/missing.py': no such config file 'configs/missing.py'\n"
    assert main(["summary", "--config=configs/stage1.py:huge"]) == 2
    assert capsys.readouterr().err == ("error: config arg 'huge': unknown words ['huge']; expected size of ('full', "
                                       "'medium', 'tiny'), 'synthetic'\n")
    assert main(["summary"]) == 2
    assert "--config is required" in capsys.readouterr().err
