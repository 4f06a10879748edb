"""Host batches: fixed shapes, two processes disjoint and covering, exact resume, determinism, workers (tokenizing in the worker)."""

import json

import numpy as np
import pytest

from stylecrafter_jax.data.augment import target_crop
from stylecrafter_jax.data.pipeline import DataIterator, LoaderOptions, collate
from stylecrafter_jax.data.readers import open_tfds
from stylecrafter_jax.data.tokens import CaptionTokens
from stylecrafter_jax.data.transforms import CaptionCleaner, ImageTransform, StyleReference, VideoTransform
from stylecrafter_jax.errors import ConfigError, DataError

CLEANER = CaptionCleaner(rules=(r"^a painting of ",))
IMAGES = ImageTransform((64, 64), StyleReference(100, 64, 32), CLEANER)


def _iterator(source, global_batch=4, seed=0, index=0, count=1, transform=IMAGES, **kwargs):
    return DataIterator(source, transform, global_batch=global_batch, seed=seed, process_index=index,
                        process_count=count, loader=LoaderOptions(read_threads=2, prefetch=2), **kwargs)


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


@pytest.fixture(scope="module")
def images(image_data_dir):
    return open_tfds(image_data_dir, "style_images")


def test_batches_have_fixed_shapes_and_the_centre_crop(images):
    batch = next(_iterator(images))
    assert batch["image"].shape == (4, 64, 64, 3) and batch["image"].dtype == np.uint8
    assert batch["style"].shape == (4, 32, 32, 3) and batch["style"].dtype == np.uint8
    assert batch["caption"].shape == (4,) and batch["index"].dtype == np.int64
    for i, record_index in enumerate(batch["index"]):
        record = images[int(record_index)]
        np.testing.assert_array_equal(batch["image"][i], target_crop(record["image"], (64, 64)))
        assert batch["caption"][i] == record["caption"].decode().removeprefix("a painting of ")


def test_two_processes_are_disjoint_and_cover_each_epoch(images):
    seen = []
    for process in (0, 1):
        batches = _take(_iterator(images, global_batch=2, index=process, count=2), 10)  # two epochs of 10
        seen.append([int(b["index"][0]) for b in batches])
    for epoch in (slice(0, 5), slice(5, 10)):
        first, second = seen[0][epoch], seen[1][epoch]
        assert not set(first) & set(second)
        assert sorted(first + second) == list(range(10))
    assert seen[0][:5] + seen[1][:5] != seen[0][5:] + seen[1][5:]  # a new permutation each epoch


def test_resume_continues_with_the_next_unseen_example(images):
    iterator = _iterator(images, seed=5)
    _take(iterator, 3)
    state = json.loads(json.dumps(iterator.get_state()))
    assert state == {"examples": 12, "seed": 5, "num_records": 10}
    expected = _take(iterator, 4)
    resumed = _iterator(images, seed=5)
    resumed.set_state(state)
    for want, got in zip(expected, _take(resumed, 4)):
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(want[key], got[key])
    assert resumed.get_state()["examples"] == 28


def test_resume_on_another_process_count_continues_the_global_stream(images):
    single = _iterator(images, global_batch=2)
    _take(single, 3)
    state = single.get_state()
    following = [int(i) for b in _take(single, 3) for i in b["index"]]
    halves = []
    for process in (0, 1):
        iterator = _iterator(images, global_batch=2, index=process, count=2)
        iterator.set_state(state)
        halves.append([int(b["index"][0]) for b in _take(iterator, 3)])
    assert [i for pair in zip(*halves) for i in pair] == following


def test_same_seed_same_batches_other_seed_other_order(images):
    a, b, c = (next(_iterator(images, seed=s)) for s in (1, 1, 2))
    np.testing.assert_array_equal(a["style"], b["style"])
    assert list(a["index"]) != list(c["index"])


def test_state_of_another_order_is_rejected(images):
    iterator = _iterator(images, seed=1)
    with pytest.raises(ConfigError, match="seed=2"):
        iterator.set_state({"examples": 0, "seed": 2, "num_records": 10})
    with pytest.raises(DataError, match="over 11 records"):
        iterator.set_state({"examples": 0, "seed": 1, "num_records": 11})


def test_global_batch_must_divide_over_processes(images):
    with pytest.raises(ConfigError, match="process_count=3"):
        _iterator(images, global_batch=4, count=3)


def test_float_output_is_the_uint8_output_scaled(images):
    as_float = ImageTransform((64, 64), StyleReference(100, 64, 32), CLEANER, dtype="float32")
    u8, f32 = next(_iterator(images)), next(_iterator(images, transform=as_float))
    assert f32["image"].dtype == np.float32 and f32["image"].min() >= -1 and f32["image"].max() <= 1
    np.testing.assert_allclose(f32["image"], u8["image"] / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(f32["style"], u8["style"] / 127.5 - 1, atol=1e-6)


def test_video_batches(video_data_dir):
    videos = open_tfds(video_data_dir, "videos")
    transform = VideoTransform(4, (1, 3), (48, 64), "random", StyleReference(80, 48, 32), CLEANER)
    batch = next(_iterator(videos, global_batch=3, transform=transform))
    assert batch["video"].shape == (3, 4, 48, 64, 3) and batch["video"].dtype == np.uint8
    assert batch["style"].shape == (3, 32, 32, 3)
    assert batch["fps"].dtype == np.float32 and set(batch["fps"]) <= {24.0, 12.0, 8.0}
    np.testing.assert_array_equal(batch["fps"], 24 // batch["frame_stride"])
    assert list(batch["caption"]) == [f"a watercolor painting of a dog {i}" for i in batch["index"]]


def test_worker_processes_give_the_same_batches_and_tokenize(images, clip_tokenizer):
    plain = _take(_iterator(images), 3)
    workers = DataIterator(images, IMAGES, global_batch=4, seed=0, process_index=0, process_count=1,
                           loader=LoaderOptions(worker_count=1, read_threads=2, prefetch=2),
                           batch_map=CaptionTokens(clip_tokenizer, rules=()))
    try:
        for want, got in zip(plain, _take(workers, 3)):
            np.testing.assert_array_equal(want["image"], got["image"])
            assert type(got["image"]) is np.ndarray
            np.testing.assert_array_equal(got["tokens"], clip_tokenizer(list(want["caption"])))
    finally:
        workers.close()


def test_collate_stacks_arrays_and_keeps_strings():
    batch = collate([{"a": np.zeros(2), "c": "x"}, {"a": np.ones(2), "c": "yy"}])
    np.testing.assert_array_equal(batch["a"], [[0, 0], [1, 1]])
    assert batch["c"].dtype == object and list(batch["c"]) == ["x", "yy"]


class _Damaged:
    """A source whose records 3 and 4 cannot be decoded (what storage damage looks like)."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        if index in (3, 4):
            raise OSError(f"cannot identify image file (record {index})")
        return self.source[index]


def test_a_damaged_record_is_replaced_by_the_next(images, caplog):
    unshuffled = _take(_iterator(_Damaged(images), global_batch=10, shuffle=False), 1)[0]
    assert list(unshuffled["index"]) == [0, 1, 2, 5, 5, 5, 6, 7, 8, 9]
    assert "record 3 cannot be read (OSError" in caplog.text


def test_a_source_of_damaged_records_raises(images):
    class _AllDamaged(_Damaged):
        def __getitem__(self, index):
            raise OSError("damaged")

    with pytest.raises(DataError, match="records 0 to 8 \\(of 10\\) cannot be read"):
        next(_iterator(_AllDamaged(images), global_batch=1, shuffle=False))
