"""make_iterator from the data config: every stage's batch keys, shapes and dtypes; token ids; config errors."""

import dataclasses

import numpy as np
import pytest

from configs.stage1 import get_config as stage1_config
from configs.stage2 import get_config as stage2_config
from configs.toy import get_config as toy_config
from stylecrafter_jax.data.build.options import BuildOptions
from stylecrafter_jax.data.defaults import data_config
from stylecrafter_jax.data.iterators import make_iterator
from stylecrafter_jax.errors import ConfigError, DataError


def test_stage1_images_from_a_built_dataset(image_data_dir):
    data = stage1_config("tiny").data
    data.images.data_dir = image_data_dir
    batch = next(make_iterator(data, process_index=0, process_count=1))
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        "image": ((8, 64, 64, 3), np.uint8), "style": ((8, 64, 64, 3), np.uint8), "caption": ((8,), object),
        "index": ((8,), np.int64)}
    assert all(c.startswith("a cat ") for c in batch["caption"])  # "a painting of" removed by the config rules


def test_videos_from_a_built_dataset_in_float(video_data_dir):
    data = data_config("tiny")
    data.videos.update(data_dir=video_data_dir, size=(48, 64))
    data.dtype = "float32"
    batch = next(make_iterator(data, process_index=1, process_count=2))
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        "video": ((1, 4, 48, 64, 3), np.float32), "style": ((1, 64, 64, 3), np.float32), "caption": ((1,), object),
        "fps": ((1,), np.float32), "frame_stride": ((1,), np.int32), "index": ((1,), np.int64)}
    assert -1 <= batch["video"].min() < batch["video"].max() <= 1


def test_a_tokenizer_adds_the_caption_ids_to_every_kind(image_data_dir, clip_tokenizer):
    data = stage1_config("tiny").data
    data.images.data_dir = image_data_dir
    batch = next(make_iterator(data, process_index=0, process_count=1, tokenizer=clip_tokenizer))
    assert batch["tokens"].shape == (8, 77) and batch["tokens"].dtype == np.int32
    np.testing.assert_array_equal(batch["tokens"], clip_tokenizer(list(batch["caption"])))
    batch = next(make_iterator(toy_config().data, process_index=0, process_count=1, tokenizer=clip_tokenizer))
    np.testing.assert_array_equal(batch["tokens"], clip_tokenizer(list(batch["caption"])))
    mixed = stage2_config("tiny,synthetic").data
    mixed.worker_count = 0
    iterator = make_iterator(mixed, process_index=0, process_count=1, tokenizer=clip_tokenizer)
    video = next(iterator.videos)
    np.testing.assert_array_equal(video["tokens"], clip_tokenizer(list(video["caption"])))


def test_default_process_index_and_count_come_from_jax():
    iterator = make_iterator(stage1_config("tiny,synthetic").data)
    assert iterator.host_batch_size == 8  # one process on the CPU test machine


def test_full_size_synthetic_shapes():
    data = stage2_config("synthetic").data
    data.images.batch_size, data.videos.batch_size, data.worker_count = 2, 1, 0
    mixed = make_iterator(data, process_index=0, process_count=1)
    image, video = next(mixed.images), next(mixed.videos)
    assert image["image"].shape == (2, 320, 512, 3) and image["style"].shape == (2, 512, 512, 3)
    assert video["video"].shape == (1, 16, 320, 512, 3) and video["style"].shape == (1, 320, 320, 3)


def test_config_values():
    stage1, stage2 = stage1_config().data, stage2_config().data
    assert (stage1.kind, stage1.images.size, stage1.images.batch_size) == ("images", (512, 512), 256)
    assert (stage2.kind, stage2.images.size, stage2.images.batch_size, stage2.image_ratio) == ("mixed", (320, 512),
                                                                                               128, 0.2)
    assert (stage2.videos.num_frames, stage2.videos.stride_range, stage2.videos.size) == (16, (1, 6), (320, 512))
    assert (stage1.images.style_resize, stage1.images.style_crop) == (800, 512)
    assert BuildOptions(**stage1.build) == BuildOptions()
    assert dataclasses.asdict(BuildOptions(**stage1_config("tiny").data.build))["image_min_side"] == 64
    assert stage2_config("tiny,synthetic").data.images.source == "synthetic"
    with pytest.raises(ConfigError, match="unknown words"):
        stage1_config("stage3")


def test_config_errors(tmp_path):
    data = stage1_config("tiny").data
    with pytest.raises(ConfigError, match="data.images.data_dir is empty"):
        make_iterator(data, process_index=0, process_count=1)
    data.images.data_dir = str(tmp_path)
    with pytest.raises(DataError, match="no built dataset 'style_images'"):
        make_iterator(data, process_index=0, process_count=1)
    data.kind = "audio"
    with pytest.raises(ConfigError, match="data.kind='audio'"):
        make_iterator(data, process_index=0, process_count=1)
