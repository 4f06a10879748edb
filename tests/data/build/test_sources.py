"""Source listing: captions file rows, sidecar captions, WikiArt-style trees, skip reasons."""

import pytest

from stylecrafter_jax.data.build.report import BuildReport
from stylecrafter_jax.data.build.sources import list_items, wikiart_title
from stylecrafter_jax.errors import DataError


@pytest.mark.parametrize("name,title", [("claude-monet_water-lilies-1916.jpg", "water lilies"),
                                        ("vincent-van-gogh_the-starry-night-1889-1.jpg", "the starry night"),
                                        ("untitled.png", "untitled"), ("a_1999.jpg", "1999")])
def test_wikiart_title(name, title):
    assert wikiart_title(name) == title


def test_folder_with_sidecars_and_a_wikiart_tree(tmp_path):
    (tmp_path / "Impressionism").mkdir()
    for name in ("a.png", "b.jpg", "Impressionism/claude-monet_water-lilies-1916.jpg",
                 "Impressionism/x_y.jpg", "notes.md"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "a.txt").write_text("a cat")
    (tmp_path / "Impressionism/x_y.txt").write_text("a pond")
    report = BuildReport()
    items = list_items("images", tmp_path, None, report)
    assert [(i.key, i.caption, i.label) for i in items] == [
        ("a.png", "a cat", ""), ("Impressionism/claude-monet_water-lilies-1916.jpg", "water lilies", "Impressionism"),
        ("Impressionism/x_y.jpg", "a pond", "Impressionism")]
    assert report.skipped == {"no caption": 1} and report.first_paths == {"no caption": ["b.jpg"]}


def test_captions_file_rows_missing_and_duplicate(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "c.csv").write_text("path,caption\na.png,a cat\nmissing.png,x\na.png,again\n")
    report = BuildReport()
    items = list_items("images", tmp_path, tmp_path / "c.csv", report)
    assert [(i.key, i.caption) for i in items] == [("a.png", "a cat")]
    assert report.skipped == {"missing file": 1, "duplicate caption row": 1}


def test_nothing_usable_raises(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="no usable images"):
        list_items("images", tmp_path, None, BuildReport())
    with pytest.raises(DataError, match="does not exist"):
        list_items("videos", tmp_path / "nope", None, BuildReport())
