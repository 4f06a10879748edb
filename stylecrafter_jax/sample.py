"""Generate stylized videos or images: `python -m stylecrafter_jax.sample --config=CONFIG ... --out DIR`.

    python -m stylecrafter_jax.sample --config=configs/toy.py --prompt "a red circle" --style a.png --out out/
    python -m stylecrafter_jax.sample --config=configs/inference.py --checkpoint weights/ \
        --prompts prompts.txt --style s1.png --style s2.png --out out/ [--mode image] [--seed 123]
    python -m stylecrafter_jax.sample --config=configs/inference.py --checkpoint weights/ \
        --eval-json eval_data/eval_video_gen_example.json --eval-root eval_data --out out/

One of --prompt (repeatable), --prompts FILE (one prompt per line) or --eval-json FILE --eval-root DIR
(the official `{"prompt", "style_path"}` list; a list of paths means several references). Every
--style applies to every prompt (several = several references). Sampling settings come from the
config's `sampling` section (`--config.sampling.steps=25`, ...). Without --checkpoint the model the
toy training exported to `<workdir>/export` is used if it exists, else a random initialisation; one
line says which. Output files follow the official naming (see `stylecrafter_jax/sampling/io.py`);
existing files are never replaced without --overwrite, and every input is checked before any is written.

The batch is split over the config's `mesh` (every device; `--config.mesh.*` changes it), and over the
processes of a multi-process run (`mesh.distributed`, started as the trainer is): every process runs
the same command, process 0 writes the files.
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Sequence

from absl import flags
from ml_collections import config_flags

from stylecrafter_jax.conditioning.tokenizer import load_tokenizer
from stylecrafter_jax.cli import flag_main
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.parallel.distributed import is_primary, maybe_initialize
from stylecrafter_jax.parallel.mesh import create_mesh, describe_mesh
from stylecrafter_jax.sampling.generate import GeneratedSample, generate, load_style_images
from stylecrafter_jax.sampling.inputs import (SampleRequest, expand_samples, read_eval_json, read_prompts_file,
                                              requests_from_prompts)
from stylecrafter_jax.sampling.io import SampleWriter
from stylecrafter_jax.sampling.pipeline import SamplingPipeline
from stylecrafter_jax.sampling.settings import check_sampling, switch_mode
from stylecrafter_jax.sampling.weights import resolve_params


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """Register the command's flags on `flag_values` (config overrides are read from `argv`)."""
    config_flags.DEFINE_config_file("config", None, "Config file with get_config(arg), e.g. configs/toy.py",
                                    flag_values=flag_values, sys_argv=list(argv))
    fv = dict(flag_values=flag_values)
    flags.DEFINE_multi_string("prompt", [], "A prompt; repeat for several.", **fv)
    flags.DEFINE_string("prompts", None, "A text file with one prompt per line.", **fv)
    flags.DEFINE_string("eval-json", None, "An official evaluation JSON of {prompt, style_path} entries.", **fv)
    flags.DEFINE_string("eval-root", None, "The folder the eval JSON's style paths are relative to.", **fv)
    flags.DEFINE_multi_string("style", [], "A style reference image; repeat for several references.", **fv)
    flags.DEFINE_string("out", None, "Output folder.", **fv)
    flags.DEFINE_string("checkpoint", None, "Converted weights directory (default: <workdir>/export or random).",
                        **fv)
    flags.DEFINE_enum("mode", None, ["video", "image"], "Override sampling.mode (sizes follow the mode).", **fv)
    flags.DEFINE_integer("seed", None, "Override sampling.seed; sample i uses fold_in(seed, i).", **fv)
    flags.DEFINE_integer("batch-size", 1, "Samples per batch (same number of references within a batch).", **fv)
    flags.DEFINE_integer("n-samples", 1, "Samples per prompt (files EEEE_0, EEEE_1, ...).", **fv)
    flags.DEFINE_integer("limit", None, "Only the first N entries of the eval JSON.", **fv)
    flags.DEFINE_bool("gif", False, "Also write a GIF of each video.", **fv)
    flags.DEFINE_bool("png-frames", False, "Also write every frame of each video as PNG.", **fv)
    flags.DEFINE_enum("image-format", "jpg", ["jpg", "png"], "File format of images (official: jpg).", **fv)
    flags.DEFINE_string("tokenizer", None, "Hugging Face CLIP tokenizer folder (default: open_clip's BPE).", **fv)
    flags.DEFINE_bool("overwrite", False, "Replace existing output files.", **fv)
    flags.DEFINE_bool("progress", sys.stderr.isatty(),
                      "Progress bars over samples and steps (default: on a terminal). The step bar needs a host "
                      "callback, which keeps the sampler out of XLA's persistent compilation cache.", **fv)


def _requests(fv: flags.FlagValues) -> list[SampleRequest]:
    """The sample requests of the input flags (exactly one source)."""
    sources = [name for name, given in (("--prompt", fv.prompt), ("--prompts", fv.prompts),
                                        ("--eval-json", fv["eval-json"].value)) if given]
    if len(sources) != 1:
        raise ConfigError(f"give exactly one of --prompt, --prompts or --eval-json, got {sources or 'none'}")
    if fv["eval-json"].value is not None:
        if fv.style:
            raise ConfigError("--style cannot be combined with --eval-json: the JSON names each entry's references")
        if fv["eval-root"].value is None:
            raise ConfigError("--eval-json needs --eval-root, the folder its style paths are relative to")
        requests = read_eval_json(fv["eval-json"].value, fv["eval-root"].value)
        limit = fv.limit
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit: got {limit}, expected an integer >= 1")
        return requests if limit is None else requests[:limit]
    prompts = fv.prompt if fv.prompt else read_prompts_file(fv.prompts)
    return requests_from_prompts(prompts, fv.style)


def run(fv: flags.FlagValues) -> list[GeneratedSample]:
    """Generate and write every sample the parsed flags ask for; returns the GeneratedSample records."""
    config = fv.config
    if config is None:
        raise ConfigError("--config is required, e.g. --config=configs/toy.py")
    if "sampling" not in config:
        raise ConfigError("the config has no `sampling` section: use a sampling config such as configs/toy.py "
                          "or configs/inference.py")
    if fv.out is None:
        raise ConfigError("--out is required: the folder to write samples into")
    if fv.mode == "video" and config.model.frames == 1:
        raise ConfigError("--mode video: this config's model makes single frames (model.frames = 1); use a video "
                          "config such as configs/inference.py")
    with config.unlocked():
        if fv.mode is not None:
            switch_mode(config.sampling, config.model, fv.mode)
        if fv.seed is not None:
            config.sampling.seed = fv.seed
    check_sampling(config.sampling, config.model)
    sampling = config.sampling
    requests = _requests(fv)
    jobs = expand_samples(requests, fv["n-samples"].value)

    def writer_into(folder: str) -> SampleWriter:
        return SampleWriter(folder, sampling.mode, fps=sampling.fps, gif=fv.gif, png_frames=fv["png-frames"].value,
                            image_format=fv["image-format"].value)

    writer = writer_into(fv.out)
    writer.check_free(jobs, sampling.frames, fv.overwrite)
    styles = load_style_images(requests)
    if sampling.mode == "video" and writer.codec != "h264":
        print(f"note: this PyAV build has no H.264 encoder; writing MPEG-4 Part 2 ({writer.codec}) mp4 files")
    maybe_initialize(config.mesh.distributed)
    mesh = create_mesh(config.mesh)
    params, source = resolve_params(config, fv.checkpoint)
    print(source, flush=True)
    pipeline = SamplingPipeline(config.model, sampling, params, load_tokenizer(fv.tokenizer), report_steps=fv.progress,
                                mesh=mesh, rules=config.mesh.rules)
    batch_size = pipeline.round_batch(fv["batch-size"].value)
    print(f"sampling batches of {batch_size} on {describe_mesh(mesh)}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:  # where the other processes' copies go
        written = generate(pipeline, jobs, writer if is_primary() else writer_into(scratch), seed=sampling.seed,
                           batch_size=batch_size, overwrite=fv.overwrite, progress=fv.progress and is_primary(),
                           styles=styles)
    kind = "videos" if sampling.mode == "video" else "images"
    print(f"wrote {len(written)} {kind} ({sampling.frames}x{sampling.height}x{sampling.width}, {pipeline.num_steps} "
          f"steps) to {fv.out} in {time.perf_counter() - start:.1f} s")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv (argv[0] is the program name; sys.argv when None), run, and return the exit status (2 on bad input)."""
    return flag_main(argv, __doc__, define_flags, run)


if __name__ == "__main__":
    sys.exit(main())
