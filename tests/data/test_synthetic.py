"""Synthetic sources: the fields, shapes and dtypes of built records, deterministic per index."""

import numpy as np

from stylecrafter_jax.data.readers import open_tfds
from stylecrafter_jax.data.synthetic import SyntheticImages, SyntheticVideos


def _signature(record):
    return {k: (type(v).__name__ if not isinstance(v, np.ndarray) else (v.dtype, v.ndim)) for k, v in record.items()}


def test_images_match_built_records(image_data_dir):
    synthetic = SyntheticImages(5, (90, 120), seed=1)
    assert len(synthetic) == 5
    assert _signature(synthetic[0]) == _signature(open_tfds(image_data_dir, "style_images")[0])
    assert synthetic[3]["image"].shape == (90, 120, 3)
    np.testing.assert_array_equal(synthetic[3]["image"], SyntheticImages(5, (90, 120), seed=1)[3]["image"])
    assert not np.array_equal(synthetic[3]["image"], synthetic[4]["image"])


def test_videos_match_built_records(video_data_dir):
    synthetic = SyntheticVideos(3, 12, (64, 90), fps=24.0)
    built = open_tfds(video_data_dir, "videos")[0]
    record = synthetic[2]
    assert record.keys() == built.keys()
    assert len(record["frames"]) == 12 and record["frames"][11].shape == (64, 90, 3)
    assert float(record["fps"]) == float(built["fps"]) == 24.0
    np.testing.assert_array_equal(record["frames"][5], synthetic[2]["frames"][5])
    assert not np.array_equal(record["frames"][5], record["frames"][6])
