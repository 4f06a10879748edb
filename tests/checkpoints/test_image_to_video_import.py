"""Strict import and export of the VideoCrafter1 I2V and DynamiCrafter checkpoints on synthetic official files
(tiny configs, the official key layout, random values, fp16 and fp32): every key round-trips bit-exactly, the
DC256 `framestride_embed` rename, one report of every bad key, the one-line refusal of another variant's file,
and the schedule buffers checked against the config."""

import os

import jax
import numpy as np
import pytest
import torch

from stylecrafter_jax.checkpoints import clip_import, conversion, official_import, vae_import
from stylecrafter_jax.checkpoints.official_keys import IMAGE_EMBEDDER_UNUSED, PROJECTOR_PREFIX, UNET_PREFIX
from stylecrafter_jax.checkpoints.pretrained import load_pretrained, read_manifest
from stylecrafter_jax.checkpoints.synthetic import write_image_to_video_file
from stylecrafter_jax.checkpoints.torch_files import read_state_dict
from stylecrafter_jax.convert import main
from stylecrafter_jax.defaults import image_to_video_config
from stylecrafter_jax.diffusion.schedule import make_schedule, process_from_buffers, process_from_config
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError

CONFIG_FILES = {"videocrafter_i2v": "configs/videocrafter_i2v.py:tiny",
                "dynamicrafter_256": "configs/dynamicrafter.py:256,tiny",
                "dynamicrafter_512": "configs/dynamicrafter.py:512,tiny",
                "dynamicrafter_512_interp": "configs/dynamicrafter.py:512_interp,tiny"}
FLAGS = {"videocrafter_i2v": "--videocrafter-i2v"}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """variant, dtype -> (model config, path of its synthetic model.ckpt, the components it holds)."""
    written = {}

    def get(variant, dtype="float32"):
        if (variant, dtype) not in written:
            model = image_to_video_config(variant, "tiny").model
            files, components = write_image_to_video_file(str(tmp_path_factory.mktemp(variant)), model, dtype=dtype,
                                                          seed=len(written))
            path = files.dynamicrafter or files.videocrafter_i2v
            written[variant, dtype] = model, path, components
        return written[variant, dtype]

    return get


def _import(variant, path, out, *extra):
    return main(["import", FLAGS.get(variant, "--dynamicrafter"), path, "--config", CONFIG_FILES[variant],
                 "--out", out, "--no-hash", *extra])


def _same(a, b):
    return np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("variant, dtype", [("videocrafter_i2v", "float16"), ("dynamicrafter_256", "float32"),
                                            ("dynamicrafter_512_interp", "float16")])
def test_import_then_export_gives_back_every_key_bit_exactly(official, variant, dtype, tmp_path):
    model, path, expected = official(variant, dtype)
    out = str(tmp_path / "weights")
    assert _import(variant, path, out) == 0
    manifest = read_manifest(out)
    assert set(manifest["components"]) == {"unet", "projector", "vae", "text_encoder", "image_encoder", "schedule"}
    assert manifest["ddpm_schedule_buffers"] == "checked"
    renamed = {UNET_PREFIX + "fps_embedding.": UNET_PREFIX + "framestride_embed."}
    assert manifest["official_key_renames"] == (renamed if variant == "dynamicrafter_256" else {})
    loaded = load_pretrained(out, list(expected) + ["schedule"])
    for name, params in expected.items():
        assert jax.tree.structure(loaded[name]) == jax.tree.structure(params), name
        assert all(_same(a, b) for a, b in zip(jax.tree.leaves(loaded[name]), jax.tree.leaves(params))), name

    exported = {}
    for component in ("unet", "projector"):
        target = str(tmp_path / f"{component}.pth")
        assert main(["export", "--checkpoint", out, "--component", component, "--out", target, "--dtype", dtype]) == 0
        back = torch.load(target, weights_only=True)
        assert list(back) == ["state_dict"]
        exported.update(back["state_dict"])
    original = torch.load(path, weights_only=True)["state_dict"]
    assert set(exported) == {k for k in original if k.startswith((UNET_PREFIX, PROJECTOR_PREFIX))}
    assert all(torch.equal(exported[k], original[k]) for k in exported)
    assert any("framestride_embed" in k for k in exported) == (variant == "dynamicrafter_256")
    rest = {**official_import.image_embedder_to_official(loaded["image_encoder"]),
            **clip_import.text_params_to_open_clip(loaded["text_encoder"]),
            **vae_import.vae_params_to_official(loaded["vae"])}
    for key, value in rest.items():  # the encoders in the official layout again, at the file's dtype
        assert torch.equal(torch.from_numpy(value).to(original[key].dtype), original[key]), key
    buffers = loaded["schedule"]  # kept as stored: fp16 in an fp16 file
    assert all(buffers[k].dtype == np.dtype(dtype) and torch.equal(torch.from_numpy(buffers[k]), original[k])
               for k in buffers)
    assert set(exported) | set(rest) | set(buffers) | set(IMAGE_EMBEDDER_UNUSED) == set(original)
    process = process_from_buffers(buffers, model)
    assert process.prediction == model.diffusion.prediction and (process.scale_arr is None) == (variant ==
                                                                                                 "dynamicrafter_256")
    ours = process_from_config(model).schedule.alphas_cumprod
    np.testing.assert_array_equal(process.schedule.alphas_cumprod, ours.astype(dtype).astype(np.float32))


def test_missing_extra_and_misshaped_keys_are_reported_together(official):
    model, path, _ = official("dynamicrafter_512")
    state_dict = dict(read_state_dict(path))
    dropped = PROJECTOR_PREFIX + "norm_out.bias"
    misshaped = UNET_PREFIX + "input_blocks.0.0.weight"
    del state_dict[dropped]
    state_dict[UNET_PREFIX + "extra.weight"] = np.zeros(3, np.float32)
    state_dict[misshaped] = np.zeros((32, 8, 3, 1), np.float32)
    for key in IMAGE_EMBEDDER_UNUSED[:2]:  # the known unused keys may be absent too
        del state_dict[key]
    with pytest.raises(CheckpointMismatchError) as error:
        conversion.read_image_to_video(state_dict, model, conversion.model_encoder_configs(model), source=path)
    message = str(error.value)
    assert "1 missing" in message and dropped in message
    assert "1 unexpected" in message and UNET_PREFIX + "extra.weight" in message
    assert "1 mis-shaped" in message and f"{misshaped}: file (32, 8, 3, 1), model (32, 8, 3, 3)" in message
    assert not any(key in message for key in IMAGE_EMBEDDER_UNUSED)


@pytest.mark.parametrize("file_variant, config_variant, found, expects", [
    ("dynamicrafter_512", "videocrafter_i2v", "8-channel input", "4-channel input"),
    ("videocrafter_i2v", "dynamicrafter_512", "4-channel input", "8-channel input"),
    ("dynamicrafter_256", "dynamicrafter_512", "learned image-attention weights", "v-prediction"),
])
def test_a_checkpoint_of_another_variant_is_refused_in_one_line(official, file_variant, config_variant, found,
                                                                expects):
    _, path, _ = official(file_variant)
    model = image_to_video_config(config_variant, "tiny").model
    with pytest.raises(CheckpointMismatchError) as error:
        conversion.check_variant(read_state_dict(path), model, source=path)
    message = str(error.value)
    assert "\n" not in message and path in message and found in message and expects in message
    assert f"a {file_variant}" in message and f"config's model {config_variant}" in message


def test_the_command_line_refuses_another_variant_and_a_wrong_flag(official, tmp_path, capsys):
    _, path, _ = official("dynamicrafter_512")
    out = str(tmp_path / "weights")
    assert main(["import", "--videocrafter-i2v", path, "--config", CONFIG_FILES["videocrafter_i2v"],
                 "--out", out]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "dynamicrafter_512" in lines[0] and "videocrafter_i2v" in lines[0]
    assert main(["import", "--dynamicrafter", path, "--config", CONFIG_FILES["videocrafter_i2v"], "--out", out]) == 1
    err = capsys.readouterr().err
    assert "--dynamicrafter: the config's model (videocrafter_i2v) takes no such file" in err
    assert "--videocrafter-i2v" in err
    assert main(["import", "--videocrafter", path, "--config", CONFIG_FILES["dynamicrafter_512"], "--out", out]) == 1
    assert "--videocrafter: the config's model (dynamicrafter_512)" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_a_file_without_an_image_projector_is_refused(official):
    model, path, _ = official("dynamicrafter_512")
    text_to_video = {k: v for k, v in read_state_dict(path).items() if not k.startswith(PROJECTOR_PREFIX)}
    with pytest.raises(CheckpointMismatchError, match="holds no image projector"):
        conversion.check_variant(text_to_video, model, source=path)


def test_schedule_buffers_fp16_pass_a_wrong_schedule_is_refused(official):
    model, path, _ = official("dynamicrafter_512")
    state_dict = dict(read_state_dict(path))
    encoders = conversion.model_encoder_configs(model)
    half = {**state_dict, **{k: np.asarray(v).astype(np.float16) for k, v in state_dict.items()
                             if k in conversion.BUFFERS}}
    _, _, buffers = conversion.read_image_to_video(half, model, encoders, source="half.ckpt")
    assert buffers["alphas_cumprod"].dtype == np.float16 and buffers["scale_arr"].dtype == np.float16
    betas = np.asarray(state_dict["betas"]).copy()
    betas[10] *= 1.01
    with pytest.raises(CheckpointMismatchError, match="'betas': 1 of 1000 values differ"):
        conversion.read_image_to_video({**state_dict, "betas": betas}, model, encoders, source="bad.ckpt")
    with pytest.raises(CheckpointMismatchError, match="scale_arr base 0.3 .a dynamicrafter_1024 checkpoint"):
        conversion.read_image_to_video({**state_dict, "scale_arr": np.full(1400, 0.3, np.float32)}, model,
                                       encoders, source="bad.ckpt")
    eps = dict(make_schedule()._asdict())  # a scaled-linear eps schedule in a v-prediction ZTSNR model's file
    with pytest.raises(CheckpointMismatchError, match="eps-prediction, scaled-linear betas"):
        conversion.read_image_to_video({**state_dict, **eps}, model, encoders, source="bad.ckpt")


def test_export_of_a_component_the_directory_lacks(official, tmp_path):
    variant = "videocrafter_i2v"
    _, path, _ = official(variant, "float16")
    out = str(tmp_path / "weights")
    assert _import(variant, path, out, "--only", "projector") == 0
    assert set(read_manifest(out)["components"]) == {"projector"}
    with pytest.raises(CheckpointMismatchError, match="no component 'unet'"):
        conversion.export_component(out, "unet", str(tmp_path / "unet.safetensors"))
    with pytest.raises(ConfigError, match="components \\['adapter'\\]"):
        conversion.convert_official(conversion.OfficialFiles(videocrafter_i2v=path), str(tmp_path / "w2"),
                                    image_to_video_config(variant, "tiny").model, names=("adapter",))


@pytest.mark.parametrize("variant, unet_keys, total", [("dynamicrafter_512", 1516, 2_609_142_405),
                                                      ("videocrafter_i2v", 1516, 2_608_885_125)])
def test_full_size_key_table_is_the_reference_checkpoint(variant, unet_keys, total):
    """§6 prefix counts and §5's whole-checkpoint parameter count (eval_shape only)."""
    model = image_to_video_config(variant, "full").model
    table = conversion.image_to_video_key_table(conversion.abstract_components(model), model)
    prefixes = {UNET_PREFIX: unet_keys, PROJECTOR_PREFIX: 51, "embedder.model.visual.": 392,
                clip_import.VIDEOCRAFTER_TEXT_PREFIX: 294, vae_import.VAE_PREFIX: 248}
    assert {p: sum(k.startswith(p) for k in table) for p in prefixes} == prefixes
    buffers = set(table) - {k for k in table if k.startswith(tuple(prefixes))}
    assert buffers == set(conversion.BUFFERS) and table["scale_arr"] == (1400,)
    text = {k.removeprefix(clip_import.VIDEOCRAFTER_TEXT_PREFIX): s for k, s in table.items()
            if k.startswith(clip_import.VIDEOCRAFTER_TEXT_PREFIX)}
    unused = [text[k.removeprefix("embedder.model.")] for k in IMAGE_EMBEDDER_UNUSED]  # the text tower's shapes
    assert sum(int(np.prod(s)) for s in unused) == 51_723_265
    assert sum(int(np.prod(s)) for s in table.values()) + 51_723_265 == total


def test_a_weights_only_state_dict_is_checked_by_its_weights(official):
    model, path, _ = official("dynamicrafter_512")
    weights = {k: v for k, v in read_state_dict(path).items() if k not in conversion.BUFFERS}
    conversion.check_variant(weights, model, source=path)  # no buffers: no schedule features to compare
    with pytest.raises(CheckpointMismatchError, match="8-channel input .* expects 4-channel input"):
        conversion.check_variant(weights, image_to_video_config("videocrafter_i2v", "tiny").model, source=path)
