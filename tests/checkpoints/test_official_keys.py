"""Every U-Net and adapter leaf of the full model maps to exactly one key of the official key tables, with
the table's shape after the table's transform; every table key is covered (jax.eval_shape only)."""

from collections import defaultdict

import flax.linen as nn
import numpy as np
import pytest

from stylecrafter_jax.checkpoints.components import trained_tree_to_components
from stylecrafter_jax.checkpoints.key_maps import flat_shapes
from stylecrafter_jax.checkpoints.official_import import temporal_module_paths
from stylecrafter_jax.checkpoints.official_keys import UNET_PREFIX, adapter_key, unet_key
from stylecrafter_jax.checkpoints.torch_layout import to_torch
from stylecrafter_jax.models.build import param_shapes
from stylecrafter_jax.models.sizes import model_config
from tests.checkpoints.official_tables import (TRANSFORMS, adapter_table, shape, temporal_table,
                                               unet_table)


@pytest.fixture(scope="module")
def abstract():
    """The full model's abstract {'unet' (with style branches), 'adapter'} tree."""
    return nn.unbox(param_shapes(model_config("full")))


@pytest.fixture(scope="module")
def full(abstract):
    """Flat {path: shape} of the full model's U-Net and adapter."""
    return flat_shapes(abstract["unet"]), flat_shapes(abstract["adapter"])


def _leaves_by_key(shapes, key_fn):
    by_key = defaultdict(list)
    for path, leaf_shape in shapes.items():
        spec = key_fn(path, len(leaf_shape))
        by_key[spec.torch_key].append((path, leaf_shape, spec))
    return by_key


def _check_against_table(by_key, rows):
    assert set(by_key) == set(rows), (sorted(set(by_key) - set(rows))[:5], sorted(set(rows) - set(by_key))[:5])
    for key, leaves in by_key.items():
        row = rows[key]
        parts = sorted(spec.part for _, _, spec in leaves if spec.part is not None)
        assert parts in ([], [0, 1, 2]), (key, parts)  # one leaf, or exactly the q, k, v row blocks
        assert len(leaves) == (3 if parts else 1), key
        blocks = []
        for path, leaf_shape, spec in sorted(leaves, key=lambda leaf: leaf[2].part or 0):
            assert spec.transform == TRANSFORMS[row["transform"]], (key, path)
            blocks.append(to_torch(np.zeros(leaf_shape, np.float32), spec.transform))
            if not parts:
                assert leaf_shape == shape(row["flax_shape"]), (key, path)
        assert np.concatenate(blocks).shape == shape(row["torch_shape"]), key


def test_every_unet_leaf_maps_to_one_model_ckpt_or_adapter_key(full):
    unet, _ = full
    table = unet_table()
    assert len(table) == 1196
    by_key = _leaves_by_key(unet, unet_key)
    base = {k: v for k, v in by_key.items() if k.startswith(UNET_PREFIX)}
    processors = {k: v for k, v in by_key.items() if not k.startswith(UNET_PREFIX)}
    _check_against_table(base, table)
    assert all("/attn2/processor/" in path for leaves in processors.values() for path, _, _ in leaves)
    assert all(k.startswith("kv_attn_layers.") for k in processors) and len(processors) == 64
    _check_against_table(processors, {k: v for k, v in adapter_table().items() if k.startswith("kv_attn_layers.")})


def test_every_adapter_leaf_maps_to_one_adapter_key(full):
    _, adapter = full
    by_key = _leaves_by_key(adapter, adapter_key)
    rows = {k: v for k, v in adapter_table().items() if not k.startswith("kv_attn_layers.")}
    assert len(rows) == 139 - 64
    _check_against_table(by_key, rows)
    assert sum(len(leaves) == 3 for leaves in by_key.values()) == 10  # 5 packed in_proj weights and biases


def test_temporal_file_layout_is_the_unets_temporal_transformers(abstract):
    layout = temporal_table()
    components = trained_tree_to_components(abstract)
    assert temporal_module_paths(components["unet"]) == sorted(layout)
    assert len(layout) == 17 and all(len(rows) == 30 for rows in layout.values())
    model_ckpt = unet_table()
    for outer, rows in layout.items():
        for inner, row in rows.items():
            key = f"{UNET_PREFIX}{outer}.{inner}"
            assert row["maps_to_model.ckpt_key"] == key
            assert model_ckpt[key]["torch_shape"] == row["torch_shape"], key


def test_parameter_counts_equal_the_reference(full):
    unet, adapter = full
    count = lambda shapes: sum(int(np.prod(s)) for s in shapes.values())  # noqa: E731
    base = {p: s for p, s in unet.items() if "/processor/" not in p}
    temporal = {p: s for p, s in base.items()
                if any(p.startswith(m) for m in _temporal_flax_prefixes(unet))}
    assert count(base) == 1_144_485_956
    assert count(adapter) + count(unet) - count(base) == 111_188_161
    assert count(temporal) == 278_575_232


def _temporal_flax_prefixes(unet):
    return tuple(p.split("transformer_blocks_0/attn1/relative_position_k")[0] for p in unet
                 if p.endswith("attn1/relative_position_k/embeddings_table"))
