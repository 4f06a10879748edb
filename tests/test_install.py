"""The package as a wheel: built from the repository, installed outside it, a command run from another directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_STAGE1 = f"{REPO / 'configs' / 'stage1.py'}:tiny"


def _python(args: list[str], cwd: Path, pythonpath: str) -> str:
    """stdout of the venv's python with `args`, run in `cwd` with only `pythonpath` added to sys.path."""
    env = {**os.environ, "PYTHONPATH": pythonpath, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the repository's package and pyproject.toml (the build leaves the repo untouched)."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "stylecrafter_jax", source / "stylecrafter_jax",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("stylecrafter_jax-*.whl")
    return wheel


def test_installed_wheel_runs_summary_from_another_directory(tmp_path):
    wheel = _build_wheel(tmp_path)
    modules = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    in_repo = {path.relative_to(REPO).as_posix() for path in (REPO / "stylecrafter_jax").rglob("*.py")}
    assert modules == in_repo
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    imported_from = _python(["-c", "import stylecrafter_jax; print(stylecrafter_jax.__file__)"], elsewhere, str(site))
    assert Path(imported_from.strip()).is_relative_to(site)
    command = ["-m", "stylecrafter_jax.summary", f"--config={TINY_STAGE1}", "--json"]
    installed = json.loads(_python(command, elsewhere, str(site)))
    from_repo = json.loads(_python(command, REPO, str(REPO)))
    assert installed == from_repo
    assert installed["trainable"] > 0 and installed["frozen"] > 0

    script = site / "bin" / "stylecrafter-summary"  # a console script of pyproject's [project.scripts]
    env = {**os.environ, "PYTHONPATH": str(site), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([str(script), "--help"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    from stylecrafter_jax import summary
    assert done.stdout.startswith(summary.__doc__.split("\n")[0]) and "--config" in done.stdout
