"""paths: URL detection, absolute forms, whole-file writes, local staging and copies (local side; the bucket
side runs against an emulator in test_buckets.py)."""

import os

from stylecrafter_jax import paths


def test_urls_stay_as_given_and_local_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.is_url("gs://bucket/run") and not paths.is_url("runs/toy")
    assert paths.absolute("gs://bucket/run") == "gs://bucket/run"
    assert paths.absolute("runs/toy") == str(tmp_path / "runs" / "toy")


def test_write_text_replaces_the_file_whole_and_leaves_no_partial(tmp_path):
    target = tmp_path / "new" / "config.json"
    paths.write_text(str(target), "first")
    paths.write_text(str(target), "second")
    assert target.read_text() == "second" and os.listdir(target.parent) == ["config.json"]


def test_local_paths_are_neither_staged_nor_copied(tmp_path):
    with paths.local_staging(str(tmp_path / "out")) as local:
        assert local == str(tmp_path / "out")
    assert paths.local_copy(str(tmp_path), str(tmp_path / "cache")) == str(tmp_path)
    assert not (tmp_path / "cache").exists()


def test_upload_tree_copies_every_file_to_its_relative_path(tmp_path):
    source = tmp_path / "source"
    (source / "a" / "b").mkdir(parents=True)
    (source / "top.txt").write_text("1")
    (source / "a" / "b" / "deep.bin").write_bytes(b"\0\1")
    paths.upload_tree(str(source), f"file://{tmp_path / 'target'}")
    assert (tmp_path / "target" / "top.txt").read_text() == "1"
    assert (tmp_path / "target" / "a" / "b" / "deep.bin").read_bytes() == b"\0\1"


def test_local_copy_of_a_url_downloads_once_and_keeps_files_of_the_right_size(tmp_path):
    remote = tmp_path / "remote"
    (remote / "v").mkdir(parents=True)
    (remote / "v" / "shard").write_bytes(b"12345")
    cache = tmp_path / "cache"
    local = paths.local_copy(f"file://{remote}", str(cache))
    assert local == os.path.join(str(cache), str(remote)) and open(os.path.join(local, "v", "shard"), "rb").read() == b"12345"
    with open(os.path.join(local, "v", "shard"), "wb") as f:
        f.write(b"abcde")  # same size: kept as it is
    paths.local_copy(f"file://{remote}", str(cache))
    assert open(os.path.join(local, "v", "shard"), "rb").read() == b"abcde"
    (remote / "v" / "shard").write_bytes(b"123456")  # another size: downloaded again
    paths.local_copy(f"file://{remote}", str(cache))
    assert open(os.path.join(local, "v", "shard"), "rb").read() == b"123456"
    assert sorted(os.listdir(os.path.join(local, "v"))) == ["shard"]
