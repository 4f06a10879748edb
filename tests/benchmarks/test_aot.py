"""benchmarks.aot: a tiny train step compiled for a v5p-8 topology, and its refusals (needs libtpu)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import aot

NUMBERS = ("compile_s", "arguments_gib", "outputs_gib", "temporaries_gib", "total_gib", "hbm_gib", "tflop_per_step",
           "tflop_per_chip", "bound_s", "estimate_s", "estimated_mfu")


@pytest.fixture(scope="module")
def libtpu():
    if importlib.util.find_spec("libtpu") is None:
        pytest.skip("libtpu is not installed (pip install -r requirements-tpu.txt): no TPU topology to compile for")


def test_slice_shapes_follow_cloud_tpu_layouts():
    assert [aot.slice_shape(c, 3) for c in (1, 4, 8, 16, 32, 64)] == [
        (1, 1, 1), (2, 2, 1), (2, 2, 2), (2, 2, 4), (2, 4, 4), (4, 4, 4)]
    assert [aot.slice_shape(c, 2) for c in (1, 4, 8, 16, 32)] == [(1, 1), (2, 2), (2, 4), (4, 4), (4, 8)]


def test_tiny_stage1_row_on_v5p_8(libtpu, capsys):
    assert aot.main(["--config=configs/stage1.py:tiny", "--topology=v5p-8", "--json"]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    row = json.loads(line)
    assert (row["kind"], row["chips"], row["batch"], row["mesh"]) == ("images", 4, 8, "1,4,1")
    assert (row["dtype"], row["attention"], row["remat"]) == ("float32", "xla", "none")
    for key in NUMBERS:
        assert row[key] > 0, key
    assert row["hbm_gib"] == 95 and row["fits"] is True
    assert row["total_gib"] >= row["temporaries_gib"]
    assert row["tflop_per_step"] == pytest.approx(4 * row["tflop_per_chip"])
    assert row["all-gather"] > 0 and row["reduce-scatter"] + row["all-reduce"] > 0


@pytest.mark.parametrize("flags, message", [
    (["--topology=v5p:3x3x7"], "libtpu refused the topology"),
    (["--topology=v9-8"], "expected v5p-N"),
    (["--topology=v5p-8", "--batch=6"], "does not divide over data x fsdp"),
    (["--topology=v5p-8", "--remat=sometimes"], "no such remat policy"),
])
def test_bad_input_is_one_line_and_exit_2(libtpu, capsys, flags, message):
    assert aot.main(["--config=configs/stage1.py:tiny", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
