"""`python -m stylecrafter_jax.train` goes through the shared flag_main: a config file that does not exist and a
config override with a typo are each one `error:` line and exit status 2, no traceback."""

import os
import subprocess
import sys

from stylecrafter_jax.train.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_missing_config_file_is_one_error_line_without_a_traceback():
    out = subprocess.run([sys.executable, "-m", "stylecrafter_jax.train", "--config=configs/nope.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2, out.stderr
    assert out.stderr == "error: --config 'configs/nope.py': no such config file 'configs/nope.py'\n", out.stderr
    assert out.stdout == ""


def test_a_config_override_with_a_typo_is_one_error_line(tmp_path, capsys):
    argv = ["train", "--config=configs/toy.py:quick", f"--config.workdir={tmp_path}", "--config.trian.steps=3"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad flag or config override:"), lines
    assert "trian" in lines[0] and 'Did you mean "train"' in lines[0], lines
    assert not any(tmp_path.iterdir())  # refused before anything was written
