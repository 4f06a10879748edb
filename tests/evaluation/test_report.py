"""Aggregation and tables: means over the rows that have a metric, grouping, CSV/markdown, contact sheets."""

import numpy as np
from PIL import Image

from stylecrafter_jax.evaluation.report import ContactSheets, group_table, summarize, write_tables

ROWS = [
    {"style": "a.png", "prompt": "p|1", "clip_text": 0.1, "clip_style": 0.5, "dino_style": 0.2, "clip_temp": 0.9,
     "warp_error": 0.01},
    {"style": "b.png", "prompt": "p|1", "clip_text": 0.3, "clip_style": 0.7, "dino_style": 0.4, "clip_temp": None,
     "warp_error": None},
    {"style": "a.png", "prompt": "p2", "clip_text": 0.2, "clip_style": 0.6, "dino_style": 0.3, "clip_temp": 0.8,
     "warp_error": 0.03},
]


def test_summarize_and_group():
    means = summarize(ROWS)
    np.testing.assert_allclose([means["clip_text"], means["clip_temp"], means["warp_error"]], [0.2, 0.85, 0.02])
    assert summarize([ROWS[1]])["clip_temp"] is None
    table = group_table(ROWS, "style")
    assert [(row["style"], row["samples"]) for row in table] == [("a.png", 2), ("b.png", 1)]
    np.testing.assert_allclose(table[0]["clip_style"], 0.55)


def test_tables_are_written_as_csv_and_markdown(tmp_path):
    write_tables(group_table(ROWS, "prompt"), str(tmp_path / "per_prompt"))
    csv_lines = (tmp_path / "per_prompt.csv").read_text().splitlines()
    assert csv_lines[0] == "prompt,samples,clip_text,clip_style,dino_style,clip_temp,warp_error"
    assert csv_lines[1] == "p|1,2,0.2000,0.6000,0.3000,0.9000,0.0100"
    md = (tmp_path / "per_prompt.md").read_text().splitlines()
    assert md[1] == "|---|---|---|---|---|---|---|" and md[2].startswith("| p\\|1 | 2 | 0.2000")


def test_contact_sheet_layout(tmp_path):
    ref = tmp_path / "ref.png"
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(ref)
    video = np.stack([np.full((20, 30, 3), 10 * t, np.uint8) for t in range(10)])
    path = ContactSheets(str(tmp_path / "sheets"), frames=4, height=20).write([str(ref)], "0000_0", video)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (20, 20 + 4 + 4 * 30 + 5 * 4, 3)
    assert (sheet[:, :20] == 200).all()
    picked = [sheet[0, 20 + 3 * 4 + i * 34, 0] for i in range(4)]  # after gap, gap tile, gap: frames 0, 3, 6, 9
    assert picked == [0, 30, 60, 90]
