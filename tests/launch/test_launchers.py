"""Tests for launch/: bash -n, shellcheck when installed, dry-run output, the real path against fake
gcloud/xpk/srun/scontrol, bad options, and the README's commands."""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from stylecrafter_jax.conditioning.tokenizer import OPEN_CLIP_PACKAGE

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["launch/tpu_pod.sh", "launch/gke_xpk.sh", "launch/slurm_gpu.sbatch", "launch/common.sh"]
FAKE_TOOL = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$FAKE_LOG"
if [[ $(basename "$0") == srun ]]; then echo "coordinator=$JAX_COORDINATOR_ADDRESS"; fi
if [[ $(basename "$0") == scontrol ]]; then echo node-a; echo node-b; fi
if [[ $(basename "$0") == gcloud && $* == *" describe "* ]]; then exit "${FAKE_DESCRIBE_RC:-1}"; fi
exit 0
"""


@pytest.fixture()
def fake_env(tmp_path):
    """PATH with recording stand-ins for the cluster tools; the log of their calls is FAKE_LOG."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "xpk", "srun", "scontrol"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TPU_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_LOG=str(log), TMPDIR=str(tmp_path))
    return env, log


def launch(args, env, **kwargs):
    return subprocess.run(["bash", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, **kwargs)


def commands(output):
    """The printed commands (lines starting with '+ '), split like a shell would."""
    return [shlex.split(line[2:]) for line in output.splitlines() if line.startswith("+ ")]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
    result = subprocess.run(["bash", "-n", script], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean():
    result = subprocess.run(["shellcheck", "-x", *SCRIPTS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_tpu_pod_dry_run_prints_and_runs_nothing(fake_env):
    env, log = fake_env
    result = launch(["launch/tpu_pod.sh", "--name", "sc", "--zone", "us-east5-a", "--accelerator-type",
                     "v5litepod-16", "--stage", "2", "--workdir", "gs://b/run", "--dry-run", "--", "--config.seed=3"],
                    env)
    assert result.returncode == 0, result.stderr
    printed = commands(result.stdout)
    assert printed[0] == ["gcloud", "compute", "tpus", "tpu-vm", "describe", "sc", "--zone=us-east5-a"]
    assert printed[1] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "sc", "--zone=us-east5-a",
                          "--accelerator-type=v5litepod-16", "--version=v2-alpha-tpuv5-lite"]
    assert printed[3][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in printed[3]
    train = printed[-1]
    assert train[4:6] == ["ssh", "sc"] and "--worker=all" in train
    assert (".venv/bin/python -m stylecrafter_jax.train --config=configs/stage2.py "
            "--config.mesh.distributed.initialize=always --config.workdir=gs://b/run "
            "--config.data.videos.batch_size=16 --config.data.images.batch_size=256 --config.seed=3") in train[-1]
    assert log.read_text() == ""  # nothing was run
    install = next(c for c in printed if "requirements.txt" in c[-1])
    assert f"--no-deps {OPEN_CLIP_PACKAGE}" in install[-1]  # every worker gets the tokenizer's vocabulary


def test_tpu_pod_creates_a_missing_slice_and_runs_what_it_prints(fake_env):
    env, log = fake_env
    result = launch(["launch/tpu_pod.sh", "--name", "sc", "--zone", "z", "--project", "p"], env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("gcloud compute tpus tpu-vm describe sc --zone=z --project=p")
    assert calls[1].startswith("gcloud compute tpus tpu-vm create sc --zone=z --project=p --accelerator-type=v5p-32")
    assert [c.split()[4] for c in calls[2:]] == ["scp", "ssh", "ssh", "ssh"]
    assert "--config=configs/stage1.py" in calls[-1]
    assert (Path(env["TMPDIR"]) / "stylecrafter-jax-src.tar.gz").stat().st_size > 0
    printed = [" ".join(c) for c in commands(result.stdout) if c[0] == "gcloud"]
    assert len(printed) == len(calls)


def test_tpu_pod_reuses_an_existing_slice(fake_env):
    env, log = fake_env
    env["FAKE_DESCRIBE_RC"] = "0"
    result = launch(["launch/tpu_pod.sh", "--name", "sc", "--zone", "z", "--skip-setup"], env)
    assert result.returncode == 0, result.stderr
    assert "reusing the existing TPU VM sc" in result.stdout
    assert [c.split()[4] for c in log.read_text().splitlines()] == ["describe", "ssh"]


def test_gke_xpk_multislice_dry_run(fake_env):
    env, log = fake_env
    result = launch(["launch/gke_xpk.sh", "--cluster", "c", "--zone", "z", "--project", "p", "--num-slices", "2",
                     "--stage", "1", "--workload", "w1", "--create-cluster", "--dry-run"], env)
    assert result.returncode == 0, result.stderr
    create, workload = commands(result.stdout)
    assert create == ["xpk", "cluster", "create", "--cluster=c", "--tpu-type=v5p-128", "--num-slices=2",
                      "--zone=z", "--project=p"]
    assert workload[:3] == ["xpk", "workload", "create"] and "--num-slices=2" in workload
    assert f"--script-dir={REPO}" in workload
    command = next(arg for arg in workload if arg.startswith("--command="))
    assert f"pip install --quiet --no-deps {OPEN_CLIP_PACKAGE} && " in command
    assert command.endswith("python -m stylecrafter_jax.train --config=configs/stage1.py "
                            "--config.mesh.distributed.initialize=always --config.mesh.dcn_data=2")
    assert log.read_text() == ""


def test_gke_xpk_runs_xpk(fake_env):
    env, log = fake_env
    result = launch(["launch/gke_xpk.sh", "--cluster", "c", "--zone", "z", "--project", "p", "--stage", "2"], env)
    assert result.returncode == 0, result.stderr
    [call] = log.read_text().splitlines()
    assert call.startswith("xpk workload create --cluster=c --workload=stylecrafter-stage2-")
    assert "--config=configs/stage2.py" in call and "dcn_data" not in call


def test_slurm_dry_run_outside_a_job(fake_env):
    env, log = fake_env
    env["HEAD_NODE"] = "gpu001"
    result = launch(["launch/slurm_gpu.sbatch", "--stage", "2", "--dry-run", "--", "--config.seed=1"], env)
    assert result.returncode == 0, result.stderr
    assert "+ export JAX_COORDINATOR_ADDRESS=gpu001:8476" in result.stdout
    assert commands(result.stdout)[-1] == ["srun", "--label", "--kill-on-bad-exit=1", "--ntasks-per-node=1",
                                           ".venv/bin/python", "-m", "stylecrafter_jax.train",
                                           "--config=configs/stage2.py", "--config.seed=1"]
    assert log.read_text() == ""


def test_slurm_job_uses_the_first_node_as_coordinator(fake_env):
    env, log = fake_env
    env.update(SLURM_JOB_NODELIST="node-[a-b]", COORDINATOR_PORT="9000", SLURM_SUBMIT_DIR=str(REPO))
    result = launch(["launch/slurm_gpu.sbatch"], env)
    assert result.returncode == 0, result.stderr
    assert "coordinator=node-a:9000" in result.stdout
    assert log.read_text().splitlines() == [
        "scontrol show hostnames node-[a-b]",
        "srun --label --kill-on-bad-exit=1 --ntasks-per-node=1 .venv/bin/python -m stylecrafter_jax.train "
        "--config=configs/stage1.py"]


def test_slurm_outside_a_job_without_dry_run_is_an_error(fake_env):
    env, _ = fake_env
    result = launch(["launch/slurm_gpu.sbatch"], env)
    assert result.returncode == 2
    assert "not inside a SLURM job" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["launch/tpu_pod.sh", "--name", "n", "--zone", "z", "--stage", "3"], "--stage must be 1 or 2, got '3'"),
    (["launch/tpu_pod.sh", "--zone", "z"], "--name (or TPU_NAME) is required"),
    (["launch/tpu_pod.sh", "--name", "n", "--zone", "z", "--source", "git"], "--source git needs --repo URL"),
    (["launch/tpu_pod.sh", "--name", "n", "--zone", "z", "--bogus"], "unknown option '--bogus'"),
    (["launch/gke_xpk.sh", "--cluster", "c", "--zone", "z"], "--cluster, --zone and --project are required"),
    (["launch/gke_xpk.sh", "--cluster", "c", "--zone", "z", "--project", "p", "--num-slices", "0"],
     "--num-slices must be a positive integer"),
    (["launch/gke_xpk.sh", "--cluster", "c", "--zone", "z", "--project", "p", "--workdir", "/local"],
     "--workdir must be a gs:// bucket path"),
    (["launch/slurm_gpu.sbatch", "--stage", "0", "--dry-run"], "--stage must be 1 or 2, got '0'"),
])
def test_bad_options_fail_with_a_message(fake_env, args, message):
    env, log = fake_env
    result = launch(args, env)
    assert result.returncode == 2
    assert message in result.stderr
    assert log.read_text() == ""


def readme_launches():
    """The launcher commands in launch/README.md's code blocks, continuation lines joined."""
    text = (REPO / "launch" / "README.md").read_text()
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line.startswith(("launch/", "sbatch "))]


def test_readme_shows_both_stages_for_every_launcher():
    launches = readme_launches()
    for launcher in ("tpu_pod.sh", "gke_xpk.sh", "slurm_gpu.sbatch"):
        stages = {m for line in launches if launcher in line for m in re.findall(r"--stage (\d)", line)}
        assert stages == {"1", "2"}, launcher
    readme = (REPO / "launch" / "README.md").read_text()
    assert "python -m stylecrafter_jax.train --config=configs/stage1.py" in readme
    assert "python -m stylecrafter_jax.train --config=configs/stage2.py" in readme


@pytest.mark.parametrize("line", readme_launches())
def test_readme_commands_dry_run(fake_env, line):
    env, log = fake_env
    env["HEAD_NODE"] = "gpu001"
    args = shlex.split(line)
    if args[0] == "sbatch":
        args = [a for a in args[1:] if not a.startswith("--nodes")]
    split = args.index("--") if "--" in args else len(args)
    result = launch(args[:split] + ["--dry-run"] + args[split:], env)
    assert result.returncode == 0, result.stderr
    stage = re.search(r"--stage (\d)", line).group(1)
    assert f"stylecrafter_jax.train --config=configs/stage{stage}.py" in result.stdout
    assert log.read_text() == ""


@pytest.mark.parametrize("args, batch", [
    (["launch/tpu_pod.sh", "--name", "n", "--zone", "z", "--accelerator-type", "v5p-8", "--skip-setup"], None),
    (["launch/tpu_pod.sh", "--name", "n", "--zone", "z", "--accelerator-type", "v5p-32", "--skip-setup"], 16),
    (["launch/gke_xpk.sh", "--cluster", "c", "--zone", "z", "--project", "p"], 64),
    (["launch/gke_xpk.sh", "--cluster", "c", "--zone", "z", "--project", "p", "--num-slices", "2"], 128),
    (["launch/slurm_gpu.sbatch"], 32),
])
def test_stage2_batch_sizes_follow_the_device_count(fake_env, args, batch):
    env, _ = fake_env
    env.update(HEAD_NODE="gpu001", SLURM_JOB_NUM_NODES="4", SLURM_GPUS_ON_NODE="8")
    result = launch([*args, "--stage", "2", "--dry-run", "--", "--config.seed=1"], env)
    assert result.returncode == 0, result.stderr
    train = result.stdout[result.stdout.index("--config=configs/stage2.py"):]
    flags = re.findall(r"--config\.data\.(videos|images)\.batch_size=(\d+)", train)
    assert flags == ([] if batch is None else [("videos", str(batch)), ("images", str(16 * batch))])
    assert train.index("--config.seed=1") > max([train.index("batch_size")] if batch else [0])  # yours win
