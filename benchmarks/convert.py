"""Weight conversion: import time and peak host memory for full-size synthetic official files.

python -m benchmarks.convert [--dir /tmp/convert-bench] [--dtype float32|float16] [--keep] [--reuse] [--no-hash]

Writes model.ckpt (the full U-Net under `model.diffusion_model.`, the DDPM buffers, Lightning's
`state_dict` nesting), temporal_v1_1.pth (nested, 17 modules) and adapter_v1.pth with random values at
the full size. Then, each in a fresh process whose memory is sampled every 50 ms (RSS split into
anonymous and file-backed pages) and whose ru_maxrss is read with wait4: the import of unet + adapter
(`convert_official`, as `convert import --only unet,adapter`), the export of the temporal layers and the
adapter to .pth, and the export of the U-Net to .pth. Peaks are also given relative to the largest
component (the float32 U-Net). File-backed pages are the page cache of the memory-mapped inputs: clean
and reclaimable, unlike anonymous memory. Needs about 6 GB of disk and 5 GB of memory to write the files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

SAMPLE_SECONDS = 0.05


def write_files(directory: str, dtype: str) -> dict[str, str]:
    """Full-size model.ckpt (U-Net only), temporal and adapter files, tensor by tensor from the key maps."""
    import torch

    from stylecrafter_jax.models.sizes import model_config
    from stylecrafter_jax.checkpoints import official_import
    from stylecrafter_jax.checkpoints.conversion import abstract_components
    from stylecrafter_jax.checkpoints.key_maps import expected_torch_shapes, flat_shapes
    from stylecrafter_jax.checkpoints.official_keys import UNET_PREFIX, unet_key
    from stylecrafter_jax.diffusion.schedule import make_schedule

    abstract = abstract_components(model_config("full"), names=("unet", "adapter"))
    rng = np.random.default_rng(0)
    torch_dtype = getattr(torch, dtype)
    tensor = lambda shape: torch.from_numpy(rng.standard_normal(shape, np.float32)).to(torch_dtype)  # noqa: E731
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, name) for name in ("model.ckpt", "temporal_v1_1.pth", "adapter_v1.pth")}

    unet = expected_torch_shapes(flat_shapes(abstract["unet"]), unet_key)
    base = {key: tensor(shape) for key, shape in unet.items()}
    base.update({name: torch.from_numpy(value) for name, value in make_schedule()._asdict().items()})
    torch.save({"state_dict": base, "epoch": 0, "global_step": 0}, paths["model.ckpt"])
    del base
    nested = {}
    for module in official_import.temporal_module_paths(abstract["unet"]):
        prefix = f"{UNET_PREFIX}{module}."
        nested[module] = {key[len(prefix):]: tensor(shape) for key, shape in unet.items() if key.startswith(prefix)}
    torch.save(nested, paths["temporal_v1_1.pth"])
    del nested
    adapter = expected_torch_shapes(flat_shapes(abstract["adapter"]), official_import.adapter_component_key)
    torch.save({key: tensor(shape) for key, shape in adapter.items()}, paths["adapter_v1.pth"])
    return paths


def _memory_sampler(pid: int, peaks: dict[str, int], stop: threading.Event) -> None:
    """Track the peak VmRSS, RssAnon and RssFile (kB) of process `pid` until `stop`."""
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    field, _, value = line.partition(":")
                    if field in ("VmRSS", "RssAnon", "RssFile"):
                        peaks[field] = max(peaks.get(field, 0), int(value.split()[0]))
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(SAMPLE_SECONDS)


WRITER = "import json, sys; from benchmarks.convert import write_files; print(json.dumps(write_files(*sys.argv[1:])))"
IMPORT = """
import json, sys, time
from stylecrafter_jax.checkpoints import conversion
from stylecrafter_jax.models.sizes import model_config
import torch  # imported before the clock starts, as the converter does on its first pickle
args = json.loads(sys.argv[1])
start = time.perf_counter()
files = conversion.OfficialFiles(videocrafter=args["model.ckpt"], temporal=args["temporal_v1_1.pth"],
                                 adapter=args["adapter_v1.pth"])
manifest = conversion.convert_official(files, args["out"], model_config("full"), names=("unet", "adapter"),
                                       hash_files=args["hash"])
print(json.dumps(dict(seconds=time.perf_counter() - start, components=manifest["components"])))
"""
EXPORT = """
import json, sys, time
from stylecrafter_jax.checkpoints import conversion
import torch
args = json.loads(sys.argv[1])
start = time.perf_counter()
for component in args["components"]:
    conversion.export_component(args["out"], component, args["out"] + "-" + component + ".pth")
print(json.dumps(dict(seconds=time.perf_counter() - start)))
"""


def run_measured(code: str, args: dict) -> dict:
    """Run `code` in a fresh process sampling its memory; returns its JSON result, ru_maxrss and sampled peaks."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], stdout=out, stderr=err, env=env)
        peaks: dict[str, int] = {}
        stop = threading.Event()
        sampler = threading.Thread(target=_memory_sampler, args=(child.pid, peaks, stop), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)  # the child's own rusage, not the parent's
        stop.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        if status:
            raise RuntimeError(f"benchmark step failed:\n{err.read()[-4000:]}")
        return {**json.loads(out.read().strip().splitlines()[-1]), "maxrss_kb": usage.ru_maxrss, "peaks_kb": peaks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/tmp/convert-bench")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    parser.add_argument("--keep", action="store_true", help="keep the synthetic files and the converted directory")
    parser.add_argument("--no-hash", action="store_true", help="skip the sha256 of the source files")
    parser.add_argument("--reuse", action="store_true", help="reuse the synthetic files of a --keep run")
    args = parser.parse_args()

    start = time.perf_counter()
    names = ("model.ckpt", "temporal_v1_1.pth", "adapter_v1.pth")
    paths = {name: os.path.join(args.dir, "official", name) for name in names}
    if not (args.reuse and all(os.path.exists(path) for path in paths.values())):
        # A fresh process: ru_maxrss survives fork and exec, so the writer must not be the converter's parent.
        subprocess.run([sys.executable, "-c", WRITER, os.path.join(args.dir, "official"), args.dtype],
                       capture_output=True, text=True, check=True)
    written = time.perf_counter() - start
    sizes = {name: os.path.getsize(path) for name, path in paths.items()}
    out = os.path.join(args.dir, "converted")
    shutil.rmtree(out, ignore_errors=True)
    imported = run_measured(IMPORT, {**paths, "out": out, "hash": not args.no_hash})
    small = run_measured(EXPORT, {"out": out, "components": ["temporal", "adapter"]})
    unet = run_measured(EXPORT, {"out": out, "components": ["unet"]})
    largest = 4 * imported["components"]["unet"]["num_params"]  # float32 U-Net, the largest component
    print(f"files ({args.dtype}, written in {written:.0f} s): "
          + ", ".join(f"{name} {size / 1e9:.2f} GB" for name, size in sizes.items()))
    print(f"largest component: unet, {imported['components']['unet']['num_params']:,} parameters = "
          f"{largest / 1e9:.2f} GB float32\n")
    print("| step | time | peak RSS (ru_maxrss) | peak anonymous RSS | peak file-backed RSS |")
    print("|---|---|---|---|---|")
    steps = [("import unet + adapter" + ("" if args.no_hash else " (incl. sha256 of the files)"), imported),
             ("export temporal + adapter (.pth)", small), ("export unet (.pth)", unet)]
    ratio = lambda kb: f"{kb * 1024 / 1e9:.2f} GB ({kb * 1024 / largest:.2f}x)"  # noqa: E731
    for name, step in steps:
        print(f"| {name} | {step['seconds']:.0f} s | {ratio(step['maxrss_kb'])} | "
              f"{ratio(step['peaks_kb'].get('RssAnon', 0))} | {step['peaks_kb'].get('RssFile', 0) / 1e6 * 1.024:.2f} GB |")
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
