"""benchmarks.accelerator: the tiny CPU run end to end (every column, numbers positive or n/a where a
column does not apply on CPU), the official-PyTorch rows when a checkout exists, the batch search, imports.

The tiny run trains stage 2 only (videos, temporal layers on): stage 1 is the same code on image latents,
and each train part costs a state init and a step compile."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import accelerator
from benchmarks.accelerator import COLUMNS, NA, OutOfMemory, search_batch

pytestmark = pytest.mark.heavy  # its tests run first (tests/conftest.py)

OFFICIAL = "third_party/StyleCrafter"
HAS_OFFICIAL = os.path.isfile(os.path.join(OFFICIAL, "lvdm", "models", "samplers", "ddim.py"))
# Columns that hold a positive number per part on CPU; every other numeric column must be n/a there.
APPLIES = {
    ("video", "jax"): {"steps", "compile_s", "s_per_video", "ms_per_call", "forwards_per_s", "tflops", "xla_gib"},
    ("video", "official torch"): {"steps", "s_per_video", "ms_per_call", "forwards_per_s", "tflops", "speedup"},
    ("U-Net forward", "jax"): {"compile_s", "ms_per_call", "forwards_per_s", "tflops", "xla_gib"},
    ("VAE decode", "jax"): {"compile_s", "ms_per_call", "tflops", "xla_gib"},
    ("stage-2 step", "jax"): {"compile_s", "ms_per_call", "tflops", "xla_gib"},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("accelerator") / "run.json"
    parts = "video,official,unet,vae,stage2" if HAS_OFFICIAL else "video,unet,vae,stage2"
    rows = accelerator.main(["--size", "tiny", "--steps", "2", "--batches", "1", "--dtypes", "float32",
                             "--official-dtypes", "fp32", "--parts", parts, "--official", OFFICIAL,
                             "--train-max-batch", "1", "--train-steps", "1", "--repeats", "1",
                             "--budget-s", "100000", "--torch-threads", "1", "--json", str(out)])
    return rows, json.loads(out.read_text())


def test_tiny_run_has_every_part_and_column_with_positive_numbers_or_na(tiny_run):
    rows, _ = tiny_run
    expected = {key for key in APPLIES if key[1] == "jax" or HAS_OFFICIAL}
    assert {(r["part"], r["code"]) for r in rows} == expected
    for row in rows:
        assert list(row)[:len(COLUMNS)] == list(COLUMNS), row
        applies = APPLIES[(row["part"], row["code"])] | ({"speedup"} if HAS_OFFICIAL and row["part"] == "video"
                                                          else set())
        for column in accelerator.NUMERIC:
            value = row[column]
            if column in applies:
                assert isinstance(value, (int, float)) and value > 0, (row["part"], column, value)
            else:  # MFU (no known CPU peak), peak device memory (no CPU statistic) and what a part lacks
                assert value == NA, (row["part"], column, value)
        assert row["batch"] == (3 if row["part"] == "U-Net forward" else 1)


def test_tiny_video_row_adds_up(tiny_run):
    rows, _ = tiny_run
    video = next(r for r in rows if r["part"] == "video" and r["code"] == "jax")
    assert video["steps"] == 2 and video["finite"]
    assert video["s_per_video"] == pytest.approx(video["condition_s"] + video["ddim_s"] + video["decode_s"])
    assert video["forwards_per_s"] == pytest.approx(3 * 2 / video["ddim_s"])
    assert video["ms_per_call"] == pytest.approx(1e3 * video["ddim_s"] / 2)


def test_json_holds_the_table_and_the_pending_image_to_video_rows(tiny_run):
    rows, data = tiny_run
    assert data["columns"] == list(COLUMNS)
    assert [{c: r[c] for c in COLUMNS} for r in data["rows"]] == [{c: r[c] for c in COLUMNS} for r in rows]
    assert data["size"] == "tiny" and data["peak_flops"] is None
    assert any("image-to-video" in p for p in data["pending"])
    stage = next(r for r in data["rows"] if r["part"] == "stage-2 step")
    assert [a["batch"] for a in stage["attempts"]] == [1] and "--train-max-batch 1" in stage["note"]


@pytest.mark.skipif(not HAS_OFFICIAL, reason=f"no official StyleCrafter checkout at {OFFICIAL} "
                                              "(BENCHMARKS.md, 'Accelerator run', says how to make one)")
def test_official_rows_give_the_speedup(tiny_run):
    rows, _ = tiny_run
    official = next(r for r in rows if r["code"] == "official torch")
    ours = next(r for r in rows if r["part"] == "video" and r["code"] == "jax")
    assert official["dtype"] == "fp32" and official["speedup"] == 1.0 and official["finite"]
    assert ours["speedup"] == pytest.approx(official["s_per_video"] / ours["s_per_video"])


def _fits_up_to(limit, need_per_example=None):
    def measure(batch):
        if batch > limit:
            raise OutOfMemory(f"batch {batch}")
        return dict(batch=batch, attempt_s=1.0, need_bytes=None if need_per_example is None else
                    need_per_example * batch)
    return measure


def test_search_doubles_until_out_of_memory():
    best, attempts, why = search_batch(_fits_up_to(5), max_batch=64, time_left=lambda: 100.0)
    assert best["batch"] == 4 and [a["batch"] for a in attempts] == [1, 2, 4, 8]
    assert why == "out of memory at batch 8" and attempts[-1]["status"].startswith("out of memory")


def test_search_skips_what_the_estimate_says_fits_and_bisects_after_a_wrong_jump():
    # 1 GiB per example of 20 GiB free: from 1 it jumps to 8 (8 x 1.3 fits, 16 x 1.3 does not), then doubles.
    best, attempts, _ = search_batch(_fits_up_to(12, 1.0), max_batch=64, time_left=lambda: 100.0,
                                     free_bytes=lambda: 20.0)
    assert best["batch"] == 8 and [a["batch"] for a in attempts] == [1, 8, 16]
    # An estimate 10x too low jumps to 64; the search then bisects the powers of two down to 4.
    best, attempts, why = search_batch(_fits_up_to(5, 0.1), max_batch=64, time_left=lambda: 100.0,
                                       free_bytes=lambda: 20.0)
    assert [a["batch"] for a in attempts] == [1, 64, 8, 2, 4] and best["batch"] == 4
    assert why == "out of memory at batch 8"


def test_search_stops_at_the_cap_and_the_budget():
    best, attempts, why = search_batch(_fits_up_to(100), max_batch=4, time_left=lambda: 100.0)
    assert best["batch"] == 4 and why == "--train-max-batch 4"
    best, attempts, why = search_batch(_fits_up_to(100), max_batch=64, time_left=lambda: 1.0)
    assert best["batch"] == 1 and len(attempts) == 1 and why == "time budget (next batch 2)"
    best, attempts, why = search_batch(_fits_up_to(0), max_batch=64, time_left=lambda: 100.0)
    assert best is None and why == "out of memory at batch 1"


@pytest.mark.parametrize("argv", [["--parts", "video,bogus"], ["--batches", "1,x"], ["--dtypes", "float16"],
                                  ["--steps", "0"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        accelerator.parse_args(argv)
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_imports_without_the_packages_the_gpu_machine_lacks():
    code = ("import sys\n"
            "for name in ('grain', 'tensorflow_datasets', 'array_record', 'av', 'tensorflow', 'open_clip'):\n"
            "    sys.modules[name] = None\n"
            "import benchmarks.accelerator, benchmarks.official\n"
            "assert 'torch' not in sys.modules, 'torch is imported only for the official rows'\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
