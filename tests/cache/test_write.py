"""Cached dataset: caller-supplied encoders run once; the stored outputs read back as batches."""

import numpy as np
import pytest

from configs.stage1 import get_config as stage1_config
from stylecrafter_jax.cache.write import build_cached_dataset
from stylecrafter_jax.data.iterators import make_iterator
from stylecrafter_jax.data.pipeline import DataIterator
from stylecrafter_jax.data.readers import open_tfds
from stylecrafter_jax.data.transforms import ImageTransform
from stylecrafter_jax.errors import DataError, ShapeError

ENCODERS = {
    "latent": lambda b: b["image"].reshape(len(b["image"]), 8, 8, 8, 8, 3).mean(axis=(2, 4)).astype(np.float32),
    "text": lambda b: np.array([[len(c), c.count("a")] for c in b["caption"]], np.int32),
    "style_embedding": lambda b: b["style"][:, :2, :2].reshape(len(b["style"]), -1).astype(np.float16),
}


@pytest.fixture(scope="module")
def cached(image_data_dir, tmp_path_factory):
    data = stage1_config("tiny").data
    data.images.data_dir = image_data_dir
    out = str(tmp_path_factory.mktemp("cached"))
    written = build_cached_dataset(data, "images", ENCODERS, out, batch_size=4, num_epochs=2)
    return data, out, written


def test_records_hold_the_encoder_outputs_of_the_pipeline_examples(cached, image_data_dir):
    data, out, written = cached
    assert written == 20
    records = open_tfds(out, "cached_examples")
    assert len(records) == 20
    examples = DataIterator(open_tfds(image_data_dir, "style_images"), ImageTransform.from_config(data),
                            global_batch=20, seed=data.seed, shuffle=False, process_index=0, process_count=1)
    batch = next(examples)  # the same two unshuffled epochs, same augmentation draws
    expected = {name: encoder(batch) for name, encoder in ENCODERS.items()}
    for i in range(20):
        record = records[i]
        assert record["source_index"] == i % 10 == batch["index"][i]
        assert record["caption"].decode() == batch["caption"][i]
        for name in ENCODERS:
            assert record[name].dtype == expected[name].dtype
            np.testing.assert_array_equal(record[name], expected[name][i])


def test_cached_kind_reads_batches(cached):
    data, out, _ = cached
    data.kind, data.cached.data_dir, data.cached.batch_size = "cached", out, 4
    batch = next(make_iterator(data, process_index=0, process_count=1))
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        "latent": ((4, 8, 8, 3), np.float32), "text": ((4, 2), np.int32), "style_embedding": ((4, 12), np.float16),
        "caption": ((4,), object), "source_index": ((4,), np.int64), "index": ((4,), np.int64)}


def test_existing_cache_and_bad_encoder_raise(cached, image_data_dir, tmp_path):
    data, out, _ = cached
    with pytest.raises(DataError, match="already exists"):
        build_cached_dataset(data, "images", ENCODERS, out, batch_size=4)
    with pytest.raises(ShapeError, match="encoder 'bad' returned shape \\(3,\\)"):
        build_cached_dataset(data, "images", {"bad": lambda b: np.zeros(3)}, str(tmp_path), batch_size=4)
