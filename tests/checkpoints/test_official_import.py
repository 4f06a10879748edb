"""Official U-Net / temporal / adapter import and export.

Full size: adapter_v1.pth and temporal_v1_1.pth are written from the reference key tables (real keys,
nesting and shapes, random values) as float16 to halve the 1.56 GB they would take in float32; the
model side is eval_shape only and model.ckpt's U-Net is a table of zero-stride arrays. Small size:
synthetic official files written by `checkpoints.synthetic` (tiny config). Both must come back
bit-identical through import and export; mismatched state dicts must fail listing every bad key.
"""

import flax.linen as nn
import jax
import numpy as np
import pytest
import torch

from stylecrafter_jax.checkpoints import official_import as oi
from stylecrafter_jax.checkpoints.components import split_processors, trained_tree_to_components
from stylecrafter_jax.checkpoints.conversion import check_videocrafter_keys, encoder_configs
from stylecrafter_jax.checkpoints.synthetic import write_official_files
from stylecrafter_jax.checkpoints.torch_files import read_state_dict, write_state_dict
from stylecrafter_jax.diffusion.schedule import make_schedule
from stylecrafter_jax.errors import CheckpointMismatchError
from stylecrafter_jax.models.build import param_shapes
from stylecrafter_jax.models.sizes import model_config
from tests.checkpoints.official_tables import adapter_table, random_tensors, shape, temporal_table, unet_table
from tests.conftest import cross_attention_layers


# ---------------------------------------------------------------- full size, from the key tables

@pytest.fixture(scope="module")
def full_abstract():
    return trained_tree_to_components(nn.unbox(param_shapes(model_config("full"))))


@pytest.fixture(scope="module")
def full_files(tmp_path_factory):
    """adapter_v1.pth (flat) and temporal_v1_1.pth (nested by module path), float16, from the tables."""
    directory = tmp_path_factory.mktemp("full")
    adapter = random_tensors({k: shape(r["torch_shape"]) for k, r in adapter_table().items()}, seed=1)
    torch.save({k: torch.from_numpy(v) for k, v in adapter.items()}, directory / "adapter_v1.pth")
    del adapter
    temporal = {outer: {k: torch.from_numpy(v) for k, v in
                        random_tensors({k: shape(r["torch_shape"]) for k, r in rows.items()}, seed=2 + i).items()}
                for i, (outer, rows) in enumerate(temporal_table().items())}
    torch.save(temporal, directory / "temporal_v1_1.pth")
    return str(directory / "adapter_v1.pth"), str(directory / "temporal_v1_1.pth")


def _f32(ref):
    return np.asarray(ref, dtype=np.float32)


def test_full_size_adapter_file_imports_and_exports_bit_identical(full_abstract, full_files, tmp_path):
    refs = read_state_dict(full_files[0])
    assert len(refs) == 139 and all(ref.dtype == "float16" for ref in refs.values())
    component = oi.adapter_from_official(refs, full_abstract["adapter"])
    style = component["adapter"]["image_context_model"]
    packed = _f32(refs["image_context_model.transformer_blocks.resblocks.2.attn.in_proj_weight"])
    np.testing.assert_array_equal(style["transformer_blocks"]["resblocks_2"]["attn"]["key"]["kernel"],
                                  packed[1280:2560].T)
    np.testing.assert_array_equal(style["proj"], _f32(refs["image_context_model.proj"]))  # raw (in, out) matrix
    np.testing.assert_array_equal(style["ln1"]["scale"], _f32(refs["image_context_model.ln1.weight"]))
    branch = component["processors"]["output_blocks_11"]["1"]["transformer_blocks_0"]["attn2"]["processor"]
    key = "kv_attn_layers.output_blocks_11_1_transformer_blocks_0_attn2_processor.to_v_style.weight"
    np.testing.assert_array_equal(branch["to_v_style"]["kernel"], _f32(refs[key]).T)

    exported = oi.adapter_to_official(component)
    assert set(exported) == set(refs)
    for k, ref in refs.items():
        assert exported[k].shape == ref.shape and exported[k].flags.c_contiguous, k
        np.testing.assert_array_equal(exported[k], _f32(ref), err_msg=k)
    written = str(tmp_path / "adapter_back.pth")
    write_state_dict(written, exported, dtype="float16")
    original, back = torch.load(full_files[0], weights_only=True), torch.load(written, weights_only=True)
    assert all(torch.equal(original[k], back[k]) for k in original) and set(original) == set(back)


def test_full_size_temporal_file_replaces_all_temporal_transformers(full_abstract, full_files):
    unet_abstract = full_abstract["unet"]
    model_ckpt = {k: np.broadcast_to(np.float32(0), shape(r["torch_shape"])) for k, r in unet_table().items()}
    temporal = read_state_dict(full_files[1])
    params = oi.unet_from_official(model_ckpt, unet_abstract, temporal=temporal)
    assert not params["input_blocks_1"]["0"]["in_layers_2"]["kernel"].any()  # model.ckpt's (zero) weights
    init_attn = _f32(temporal["init_attn.0.proj_in.weight"])
    np.testing.assert_array_equal(params["init_attn_0"]["proj_in"]["kernel"], init_attn[:, :, 0].T)  # Conv1d k=1
    nested = oi.temporal_to_official(params)
    layout = temporal_table()
    assert list(nested) == sorted(layout) and all(set(nested[m]) == set(layout[m]) for m in layout)
    for module, inner in nested.items():
        for k, tensor in inner.items():
            np.testing.assert_array_equal(tensor, _f32(temporal[f"{module}.{k}"]), err_msg=f"{module}.{k}")


def test_full_size_adapter_mismatches_are_listed_together(full_abstract, full_files):
    refs = dict(read_state_dict(full_files[0]))
    del refs["scale_predictor.scale_emb"]
    refs["scale_predictor.extra.weight"] = np.zeros((2,), np.float32)
    refs["image_context_model.ln2.bias"] = np.zeros((1024,), np.float32)
    with pytest.raises(CheckpointMismatchError) as error:
        oi.adapter_from_official(refs, full_abstract["adapter"], source="adapter_v1.pth")
    message = str(error.value)
    assert "adapter_v1.pth" in message and "1 missing" in message and "scale_predictor.scale_emb" in message
    assert "1 unexpected" in message and "scale_predictor.extra.weight" in message
    assert "image_context_model.ln2.bias: file (1024,), model (1280,)" in message


# ---------------------------------------------------------------- small size, synthetic files

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(files, expected components, abstract components) of the tiny config."""
    model = model_config("tiny")
    files, components = write_official_files(str(tmp_path_factory.mktemp("tiny")), model, encoder_configs("tiny"),
                                             names=("unet", "adapter"))
    tree = nn.unbox(param_shapes(model))
    return files, components, trained_tree_to_components(tree), tree


def _equal(a, b):
    return jax.tree.structure(a) == jax.tree.structure(b) and jax.tree.all(jax.tree.map(np.array_equal, a, b))


def test_tiny_files_import_exactly_and_ignore_the_processor_aliases(tiny):
    files, expected, abstract, _ = tiny
    base = read_state_dict(files.videocrafter)
    aliases = [k for k in base if oi.PROCESSOR_ALIAS in k]
    # one alias per style-branch leaf: (to_k_style, to_v_style, norm_style weight and bias) per cross-attention
    layers = cross_attention_layers(model_config("tiny"))
    assert len(aliases) == len(jax.tree.leaves(expected["adapter"]["processors"])) == 4 * layers
    unet = oi.unet_from_official(base, abstract["unet"], temporal=read_state_dict(files.temporal))
    assert _equal(unet, expected["unet"])
    assert _equal(oi.adapter_from_official(read_state_dict(files.adapter), abstract["adapter"]), expected["adapter"])


def test_tiny_exports_equal_the_files(tiny):
    files, _, abstract, _ = tiny
    base = read_state_dict(files.videocrafter)
    unet = oi.unet_from_official(base, abstract["unet"])  # without the temporal file: model.ckpt's own weights
    exported = oi.unet_to_official(unet)
    original = {k: v for k, v in base.items() if k.startswith(oi.UNET_PREFIX) and oi.PROCESSOR_ALIAS not in k}
    assert set(exported) == set(original)
    assert all(np.array_equal(exported[k], np.asarray(v)) for k, v in original.items())
    temporal = torch.load(files.temporal, weights_only=True)
    back = oi.temporal_to_official(oi.unet_from_official(base, abstract["unet"],
                                                         temporal=read_state_dict(files.temporal)))
    assert list(back) == list(temporal) == oi.temporal_module_paths(abstract["unet"])
    assert all(np.array_equal(back[m][k], t.numpy()) for m in temporal for k, t in temporal[m].items())
    adapter = read_state_dict(files.adapter)
    again = oi.adapter_to_official(oi.adapter_from_official(adapter, abstract["adapter"]))
    assert set(again) == set(adapter) and all(np.array_equal(again[k], np.asarray(v)) for k, v in adapter.items())


def test_unet_mismatches_are_listed_together(tiny):
    files, _, abstract, _ = tiny
    base = dict(read_state_dict(files.videocrafter))
    del base["model.diffusion_model.out.2.bias"]
    base["model.diffusion_model.out.3.weight"] = np.zeros((4,), np.float32)
    base["model.diffusion_model.time_embed.0.weight"] = np.zeros((128, 31), np.float32)
    with pytest.raises(CheckpointMismatchError) as error:
        oi.unet_from_official(base, abstract["unet"], source="model.ckpt")
    message = str(error.value)
    for needle in ("model.ckpt", "1 missing", "model.diffusion_model.out.2.bias", "1 unexpected",
                   "model.diffusion_model.out.3.weight", "time_embed.0.weight: file (128, 31), model (128, 32)"):
        assert needle in message


def test_temporal_file_must_hold_exactly_the_temporal_transformers(tiny):
    files, _, abstract, _ = tiny
    base = read_state_dict(files.videocrafter)
    temporal = dict(read_state_dict(files.temporal))
    dropped = [k for k in temporal if k.startswith("middle_block.2.")]
    for k in dropped:
        del temporal[k]
    temporal["input_blocks.1.1.norm.weight"] = np.zeros((32,), np.float32)  # a spatial transformer's key
    with pytest.raises(CheckpointMismatchError) as error:
        oi.unet_from_official(base, abstract["unet"], temporal=temporal, temporal_source="temporal_v1_1.pth")
    message = str(error.value)
    assert "temporal_v1_1.pth" in message and f"{len(dropped)} missing" in message and dropped[0] in message
    assert "input_blocks.1.1.norm.weight" in message


def test_unet_import_refuses_a_tree_with_style_branches(tiny):
    files, _, _, tree = tiny
    full_unet = tree["unet"]
    assert split_processors(full_unet)[1]
    with pytest.raises(ValueError, match="processor"):
        oi.unet_from_official(read_state_dict(files.videocrafter), full_unet)


def test_videocrafter_keys_outside_the_components_and_ddpm_buffers(tiny):
    files, _, _, _ = tiny
    model = model_config("tiny")
    base = dict(read_state_dict(files.videocrafter))
    kept = check_videocrafter_keys(base, model, source="model.ckpt")
    assert set(kept) == set(make_schedule()._fields) and kept["betas"].dtype == np.float32
    with pytest.raises(CheckpointMismatchError, match="model_ema.decay"):
        check_videocrafter_keys({**base, "model_ema.decay": np.float32(0.999)}, model, source="model.ckpt")
    assert check_videocrafter_keys({**base, "model_ema.decay": np.float32(0.999)}, model, source="model.ckpt",
                                   ignore=("model_ema.",))
    no_buffers = {k: v for k, v in base.items() if k not in make_schedule()._asdict()}
    assert check_videocrafter_keys(no_buffers, model, source="model.ckpt") == {}
    betas = np.asarray(base["betas"]).copy()
    betas[10] *= 1.01
    with pytest.raises(CheckpointMismatchError, match="betas"):
        check_videocrafter_keys({**base, "betas": betas}, model, source="model.ckpt")
    half = {**base, **{k: np.asarray(v).astype(np.float16) for k, v in make_schedule()._asdict().items()}}
    kept = check_videocrafter_keys(half, model, source="model.ckpt")  # half-precision rounding is accepted
    assert kept["alphas_cumprod"].dtype == np.float16
    with pytest.raises(CheckpointMismatchError, match="missing buffer 'betas'"):
        check_videocrafter_keys({k: v for k, v in base.items() if k != "betas"}, model, source="model.ckpt")
    with pytest.raises(CheckpointMismatchError, match="scale_arr"):  # a rescaled model's buffer, not StyleCrafter's
        check_videocrafter_keys({**base, "scale_arr": np.ones(1400, np.float32)}, model, source="model.ckpt")


def test_half_precision_files_import_as_float32(tiny, tmp_path):
    files, expected, abstract, _ = tiny
    half = str(tmp_path / "adapter_fp16.pth")
    write_state_dict(half, {k: np.asarray(v) for k, v in read_state_dict(files.adapter).items()}, dtype="float16")
    refs = read_state_dict(half)
    assert {ref.dtype for ref in refs.values()} == {"float16"}
    imported = oi.adapter_from_official(refs, abstract["adapter"])
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(imported))
    rounded = jax.tree.map(lambda leaf: leaf.astype(np.float16).astype(np.float32), expected["adapter"])
    assert _equal(imported, rounded) and not _equal(imported, expected["adapter"])
