"""The one pytree key-path helper."""

import jax
import numpy as np

from stylecrafter_jax.trees import path_string


def test_path_string_joins_dict_keys_and_sequence_indices():
    tree = {"unet": {"out_2": {"kernel": np.zeros(1)}}, "blocks": [np.zeros(1), {"bias": np.zeros(1)}]}
    paths = [path_string(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]
    assert paths == ["blocks/0", "blocks/1/bias", "unet/out_2/kernel"]


def test_path_string_of_the_root_is_empty():
    assert path_string(()) == ""
