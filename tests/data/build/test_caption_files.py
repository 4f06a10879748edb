"""Captions files: CSV / JSONL / WebVid columns, non-UTF-8 and malformed rows, missing columns, sidecars."""

import pytest

from stylecrafter_jax.data.build.caption_files import read_caption_column, read_caption_rows, read_sidecar
from stylecrafter_jax.errors import DataError


def test_csv_rows_with_a_non_utf8_row(tmp_path):
    file = tmp_path / "c.csv"
    file.write_bytes(b"path,caption\na.jpg,  a cat \nb.jpg,caf\xe9 au lait\nc.jpg,a dog\n")
    rows = read_caption_rows(file)
    assert [(r.path, r.caption, r.error) for r in rows] == [
        ("a.jpg", "a cat", ""), ("b.jpg", "", "non-UTF-8 caption"), ("c.jpg", "a dog", "")]
    assert [r.line for r in rows] == [2, 3, 4]


def test_webvid_csv_paths_from_videoid_and_page_dir(tmp_path):
    file = tmp_path / "results.csv"
    file.write_text("videoid,contentUrl,duration,page_dir,name\n7,u,PT10S,042,a dog running\n8,u,PT9S,,a cat\n")
    rows = read_caption_rows(file)
    assert [(r.path, r.caption) for r in rows] == [("042/7.mp4", "a dog running"), ("8.mp4", "a cat")]


def test_jsonl_rows_with_bad_lines(tmp_path):
    file = tmp_path / "m.jsonl"
    file.write_bytes(b'{"file_name": "a.png", "text": "a cat"}\n\n{"file_name": "b.png", "text": "\xff"}\n'
                     b'not json\n{"file_name": "c.png", "text": "\\ud800"}\n{"file_name": "d.png", "text": 3}\n')
    rows = read_caption_rows(file)
    assert [(r.path, r.caption, r.error) for r in rows] == [
        ("a.png", "a cat", ""), ("m.jsonl:3", "", "non-UTF-8 caption"), ("m.jsonl:4", "", "bad caption row"),
        ("c.png", "", "non-UTF-8 caption"), ("d.png", "", "bad caption row")]


def test_missing_columns_and_unknown_suffix_raise(tmp_path):
    (tmp_path / "c.csv").write_text("file,descr\na.jpg,x\n")
    with pytest.raises(DataError, match="caption column"):
        read_caption_rows(tmp_path / "c.csv")
    (tmp_path / "c.tsv").write_text("x")
    with pytest.raises(DataError, match="expected .csv or .jsonl"):
        read_caption_rows(tmp_path / "c.tsv")
    with pytest.raises(DataError, match="does not exist"):
        read_caption_rows(tmp_path / "none.csv")


def test_caption_column_of_plain_text(tmp_path):
    (tmp_path / "c.txt").write_text("a painting of a cat\n\na dog\n")
    assert read_caption_column(tmp_path / "c.txt") == ["a painting of a cat", "a dog"]


def test_sidecar(tmp_path):
    (tmp_path / "a.txt").write_bytes("\ufeffa café\n".encode())
    assert read_sidecar(tmp_path / "a.txt") == "a café"
    (tmp_path / "b.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match="not UTF-8"):
        read_sidecar(tmp_path / "b.txt")
