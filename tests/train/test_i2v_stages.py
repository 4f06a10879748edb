"""Image-to-video stage masks train exactly the reference's sets (full size, shapes only)."""

import flax.linen as nn
import pytest
from flax import traverse_util

from stylecrafter_jax.defaults import image_to_video_config
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.build import param_shapes
from stylecrafter_jax.summary import component_counts
from stylecrafter_jax.train.stages import stage_rules
from stylecrafter_jax.train.stages import I2V_STAGES, stage_inputs, stages_for_variant
from stylecrafter_jax.train.state import count_by_label, label_params

# Reference counts (../shared/reference/i2v-dynamicrafter.md §5).
DC_UNET, VC_UNET, DC_P, VC_P, IMAGE_KV = 1_438_854_980, 1_438_843_460, 48_787_456, 48_541_696, 25_559_040
TEMPORAL = 278_431_616 + 266_891_520  # 17 temporal transformers + 22 TemporalConvBlocks
EXPECTED = {
    "videocrafter_i2v": {"vc_i2v": VC_P + IMAGE_KV},
    "dynamicrafter_256": {"dc_projector": DC_P + IMAGE_KV, "dc_adapt": DC_UNET + 16 - TEMPORAL + DC_P,
                          "dc_joint": DC_UNET + 16 - TEMPORAL + DC_P, "dc_finetune": DC_UNET + 16 + DC_P},
    "dynamicrafter_512_interp": {"dc_projector": DC_P + IMAGE_KV, "dc_adapt": DC_UNET - TEMPORAL + DC_P,
                                 "dc_joint": DC_UNET - TEMPORAL + DC_P, "dc_finetune": DC_UNET + DC_P,
                                 "dc_interp": DC_UNET + DC_P},
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def full(request):
    variant = request.param
    return variant, nn.unbox(param_shapes(image_to_video_config(variant, "full").model))


def flat_labels(shapes, stage):
    return traverse_util.flatten_dict(label_params(shapes, stage_rules(stage)), sep="/")


def test_each_stage_trains_the_reference_count(full):
    variant, shapes = full
    total = sum(component_counts(shapes)[name] for name in ("unet", "projector"))
    assert set(stages_for_variant(variant)) == set(EXPECTED[variant])
    for stage, trainable in EXPECTED[variant].items():
        counts = count_by_label(shapes, label_params(shapes, stage_rules(stage)))
        assert counts == {"train": trainable, "frozen": total - trainable}, stage


def test_trained_leaves_are_exactly_the_named_sets(full):
    variant, shapes = full
    leaves = traverse_util.flatten_dict(shapes, sep="/")
    temporal = {p for p in leaves if "/temopral_conv/" in p or p.startswith("unet/init_attn_0/")
                or p.split("/")[2:3] == ["2"]}
    projector = {p for p in leaves if p.startswith("projector/")}
    image_kv = {p for p in leaves if "/attn2/to_k_ip/" in p or "/attn2/to_v_ip/" in p}
    unet = {p for p in leaves if p.startswith("unet/")}
    named = {"vc_i2v": projector | image_kv, "dc_projector": projector | image_kv,
             "dc_adapt": projector | (unet - temporal), "dc_joint": projector | (unet - temporal),
             "dc_finetune": projector | unet, "dc_interp": projector | unet}
    for stage in EXPECTED[variant]:
        labels = flat_labels(shapes, stage)
        assert {p for p, label in labels.items() if label == "train"} == named[stage], stage
    assert len([p for p in temporal if "/temopral_conv/" in p]) == 22 * 16  # 8 convs (GN + conv) x kernel/bias


def test_spot_checks_of_the_stages(full):
    variant, shapes = full
    if variant == "videocrafter_i2v":
        labels = flat_labels(shapes, "vc_i2v")
        assert labels["unet/input_blocks_1/1/transformer_blocks_0/attn2/to_k_ip/kernel"] == "train"
        assert labels["projector/latents"] == "train"
        assert labels["unet/input_blocks_1/1/transformer_blocks_0/attn2/to_k/kernel"] == "frozen"
        assert labels["unet/fps_embedding_0/kernel"] == "frozen"
        return
    projector = flat_labels(shapes, "dc_projector")
    adapt = flat_labels(shapes, "dc_adapt")
    for path, label in [("unet/input_blocks_0/0/kernel", "train"), ("unet/fps_embedding_2/kernel", "train"),
                        ("unet/time_embed_0/kernel", "train"), ("unet/out_2/kernel", "train"),
                        ("unet/input_blocks_1/0/in_layers_2/kernel", "train"),
                        ("unet/input_blocks_1/1/transformer_blocks_0/attn2/to_k_ip/kernel", "train"),
                        ("unet/input_blocks_1/0/temopral_conv/conv4_3/kernel", "frozen"),
                        ("unet/init_attn_0/proj_in/kernel", "frozen"),
                        ("unet/middle_block/2/transformer_blocks_0/attn1/to_q/kernel", "frozen"),
                        ("projector/latents", "train")]:
        assert adapt[path] == label, path
    assert projector["unet/input_blocks_0/0/kernel"] == "frozen"
    assert projector["unet/output_blocks_11/1/transformer_blocks_0/attn2/to_v_ip/kernel"] == "train"
    assert projector["unet/output_blocks_11/1/transformer_blocks_0/attn2/to_v/kernel"] == "frozen"
    alphas = [p for p in adapt if p.endswith("/attn2/alpha")]
    assert len(alphas) == (16 if variant == "dynamicrafter_256" else 0)
    assert all(adapt[p] == "train" and projector[p] == "frozen" for p in alphas)


def test_stage_on_a_variant_it_does_not_train_is_refused():
    assert stage_inputs("dc_joint", "dynamicrafter_512").vdg
    with pytest.raises(ConfigError, match="'dc_interp' on model.variant 'dynamicrafter_512': needs a variant "
                                          "with a last-frame input"):
        stage_inputs("dc_interp", "dynamicrafter_512")
    with pytest.raises(ConfigError, match="'vc_i2v' on model.variant 'dynamicrafter_256'"):
        stage_inputs("vc_i2v", "dynamicrafter_256")
    with pytest.raises(ConfigError, match="image-to-video stages"):
        stage_inputs("stage1", "dynamicrafter_256")
    assert set(I2V_STAGES) <= set(stages_for_variant("dynamicrafter_512_interp")) | {"vc_i2v"}
