"""BuildReport: counts per reason, at most five first paths, the summary text and JSON."""

import json

from stylecrafter_jax.data.build.report import BuildReport, SkippedItem


def test_counts_first_paths_and_summary():
    report = BuildReport(written=3)
    for i in range(7):
        report.skip("corrupt image", f"c{i}.jpg")
    report.skip("missing file", "m.png")
    report.keep_small("s.png")
    assert report.total_skipped == 8 and report.first_paths["corrupt image"] == [f"c{i}.jpg" for i in range(5)]
    assert report.summary() == (
        "records written: 3\nfiles skipped: 8\n"
        "  corrupt image: 7 (first: c0.jpg, c1.jpg, c2.jpg, c3.jpg, c4.jpg)\n"
        "  missing file: 1 (first: m.png)\n"
        "below minimum size, kept to be upscaled: 1 (first: s.png)")
    assert json.loads(report.to_json())["skipped"] == {"corrupt image": 7, "missing file": 1}


def test_skipped_item_message():
    error = SkippedItem("too small", "a/b.png", "10x10 < 512")
    assert (error.reason, error.path, str(error)) == ("too small", "a/b.png", "a/b.png: too small (10x10 < 512)")
