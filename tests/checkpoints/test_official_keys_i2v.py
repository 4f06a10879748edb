"""Every Flax leaf of the full image-to-video models maps to exactly one official key with the reference's shape
(i2v-dynamicrafter.md §6) after its transform, and every key is covered (jax.eval_shape only)."""

from collections import defaultdict

import flax.linen as nn
import numpy as np
import pytest

from stylecrafter_jax.checkpoints.clip_import import vision_param_shapes
from stylecrafter_jax.checkpoints.key_maps import flat_shapes
from stylecrafter_jax.defaults import image_to_video_config
from stylecrafter_jax.checkpoints.official_keys import (IMAGE_EMBEDDER_PREFIX, IMAGE_EMBEDDER_UNUSED,
                                                        PROJECTOR_PREFIX, UNET_PREFIX, image_embedder_key,
                                                        projector_key, unet_key)
from stylecrafter_jax.checkpoints.torch_layout import to_torch
from stylecrafter_jax.models.clip import OpenCLIPVisionTower
from tests.checkpoints.official_tables import TRANSFORMS, shape, unet_table

# §6: the spatial transformers with image K/V, and the ResBlocks with a TemporalConvBlock.
ATTENTION_BLOCKS = [f"input_blocks.{i}" for i in (1, 2, 4, 5, 7, 8)] + ["middle_block"] + [
    f"output_blocks.{i}" for i in range(3, 12)]
RES_BLOCKS = [f"input_blocks.{i}.0" for i in (1, 2, 4, 5, 7, 8, 10, 11)] + ["middle_block.0", "middle_block.3"] + [
    f"output_blocks.{i}.0" for i in range(12)]


def _t2v_rows():
    """The T2V-512 U-Net table as {key: (torch shape, transform)}."""
    return {key: (shape(row["torch_shape"]), TRANSFORMS[row["transform"]]) for key, row in unet_table().items()}


def expected_unet_table(variant: str) -> dict:
    """§6: T2V-512 without relative positions, plus temporal convs, fps embedding and image K/V (DC: 8-ch conv_in)."""
    t2v = _t2v_rows()
    rows = {k: v for k, v in t2v.items() if ".relative_position_" not in k}
    assert len(t2v) - len(rows) == 68
    p = UNET_PREFIX
    if variant.startswith("dynamicrafter"):
        rows[p + "input_blocks.0.0.weight"] = ((320, 8, 3, 3), "conv")
    for i, fan_in in ((0, 320), (2, 1280)):
        rows[f"{p}fps_embedding.{i}.weight"] = ((1280, fan_in), "dense")
        rows[f"{p}fps_embedding.{i}.bias"] = ((1280,), "as-is")
    for block in ATTENTION_BLOCKS:
        attn2 = f"{p}{block}.1.transformer_blocks.0.attn2."
        c = t2v[attn2 + "to_k.weight"][0][0]
        rows[attn2 + "to_k_ip.weight"] = rows[attn2 + "to_v_ip.weight"] = ((c, 1024), "dense")
        if variant == "dynamicrafter_256":
            rows[attn2 + "alpha"] = ((), "as-is")
    for res in RES_BLOCKS:
        c = t2v[f"{p}{res}.out_layers.3.weight"][0][0]
        for conv, index in (("conv1", 2), ("conv2", 3), ("conv3", 3), ("conv4", 3)):
            base = f"{p}{res}.temopral_conv.{conv}."
            rows.update({base + "0.weight": ((c,), "as-is"), base + "0.bias": ((c,), "as-is"),
                         f"{base}{index}.weight": ((c, c, 3, 1, 1), "conv3d"), f"{base}{index}.bias": ((c,), "as-is")})
    return rows


def expected_projector_table(queries: int) -> dict:
    """§6: the 51 `image_proj_model.*` tensors."""
    p = PROJECTOR_PREFIX
    rows = {p + "latents": ((1, queries, 1024), "as-is"), p + "proj_in.weight": ((1024, 1280), "dense"),
            p + "proj_in.bias": ((1024,), "as-is"), p + "proj_out.weight": ((1024, 1024), "dense"),
            p + "proj_out.bias": ((1024,), "as-is"), p + "norm_out.weight": ((1024,), "as-is"),
            p + "norm_out.bias": ((1024,), "as-is")}
    for i in range(4):
        layer = f"{p}layers.{i}."
        for norm in ("0.norm1", "0.norm2", "1.0"):
            rows[f"{layer}{norm}.weight"] = rows[f"{layer}{norm}.bias"] = ((1024,), "as-is")
        rows.update({layer + "0.to_q.weight": ((768, 1024), "dense"), layer + "0.to_kv.weight": ((1536, 1024), "dense"),
                     layer + "0.to_out.weight": ((1024, 768), "dense"), layer + "1.1.weight": ((4096, 1024), "dense"),
                     layer + "1.3.weight": ((1024, 4096), "dense")})
    return rows


def check_against(shapes: dict, key_fn, rows: dict) -> None:
    """Each leaf maps to one row with the row's transform and torch shape; every row is covered once."""
    by_key = defaultdict(list)
    for path, leaf_shape in shapes.items():
        spec = key_fn(path, len(leaf_shape))
        by_key[spec.torch_key].append(path)
        assert spec.part is None, path
        assert spec.transform == rows.get(spec.torch_key, (None, None))[1], (path, spec)
        assert to_torch(np.zeros(leaf_shape, np.float32), spec.transform).shape == rows[spec.torch_key][0], path
    assert set(by_key) == set(rows), (sorted(set(by_key) - set(rows))[:5], sorted(set(rows) - set(by_key))[:5])
    assert all(len(paths) == 1 for paths in by_key.values())


@pytest.fixture(scope="module", params=["videocrafter_i2v", "dynamicrafter_256", "dynamicrafter_512"])
def full(request):
    """(variant, flat U-Net shapes, flat projector shapes) of the full model."""
    from stylecrafter_jax.models.build import param_shapes

    tree = nn.unbox(param_shapes(image_to_video_config(request.param, "full").model))
    return request.param, flat_shapes(tree["unet"]), flat_shapes(tree["projector"])


def test_unet_keys_and_shapes_are_the_reference_table(full):
    variant, unet, _ = full
    rows = expected_unet_table(variant)
    assert len(rows) == (1532 if variant == "dynamicrafter_256" else 1516)
    assert sum(".temopral_conv." in key for key in rows) == 352
    check_against(unet, unet_key, rows)


def test_projector_keys_and_shapes_are_the_reference_table(full):
    variant, _, projector = full
    rows = expected_projector_table(16 if variant == "videocrafter_i2v" else 256)
    assert len(rows) == 51
    check_against(projector, projector_key, rows)


def test_image_embedder_keys_cover_the_visual_tower():
    tower = OpenCLIPVisionTower()
    specs = {path: image_embedder_key(path, len(s)) for path, s in vision_param_shapes(tower).items()}
    keys = {spec.torch_key for spec in specs.values()}
    assert len(keys) == 392 and all(k.startswith(IMAGE_EMBEDDER_PREFIX + "visual.") for k in keys)
    assert len(keys | set(IMAGE_EMBEDDER_UNUSED)) == 398
    packed = [spec for spec in specs.values() if spec.part is not None]
    assert len(packed) == 32 * 6 and {spec.part for spec in packed} == {0, 1, 2}
    assert specs["conv1/kernel"] == (IMAGE_EMBEDDER_PREFIX + "visual.conv1.weight", "conv", None)
    assert specs["proj"].torch_key == IMAGE_EMBEDDER_PREFIX + "visual.proj"
