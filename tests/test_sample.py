"""Tests of `python -m stylecrafter_jax.sample`: playable mp4s for a prompt, a prompts file and an eval JSON with
several references, image mode, the toy config on a fresh machine, and a clear error without side effects
for every kind of bad input. Most runs use the tiny VAE model (configs/inference.py:tiny) at 4x32x32."""

import json
import os

import av
import numpy as np
import pytest
from PIL import Image

from stylecrafter_jax.sample import main

pytestmark = pytest.mark.heavy  # its tests run first (tests/conftest.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "inference.py") + ":tiny"
TOY = os.path.join(ROOT, "configs", "toy.py")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    for name, size in (("s0.png", (96, 128)), ("s1.jpg", (70, 50)), ("s2.png", (64, 64))):
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(folder / name)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 cut short")
    (folder / "prompts.txt").write_text("a red circle\n\n  two blue squares  \n")
    (folder / "empty.txt").write_text("\n  \n")
    entries = [{"prompt": "a red circle", "style_path": "s0.png"},
               {"prompt": "a blue square", "style_path": ["s1.jpg", "s2.png"]}]
    (folder / "eval.json").write_text(json.dumps(entries))
    (folder / "no_style.json").write_text(json.dumps([{"prompt": "a red circle"}]))
    return folder


def sample(tmp_path, *args):
    """Run the command in-process on the tiny model at 4x32x32 with 2 steps; returns the exit status."""
    argv = ["sample", f"--config={TINY}", "--config.sampling.steps=2", "--config.sampling.height=32",
            "--config.sampling.width=32", f"--config.workdir={tmp_path / 'work'}", *map(str, args)]
    return main(argv)


def decoded(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return stream.codec_context.name, float(stream.average_rate), np.stack(frames)


def test_one_prompt_writes_a_playable_mp4_and_never_overwrites_silently(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert sample(tmp_path, "--prompt", "a red circle", "--style", files / "s0.png", "--out", out) == 0
    stdout = capsys.readouterr().out
    assert "weights: randomly initialised tiny model (seed 0)" in stdout and "wrote 1 videos (4x32x32" in stdout
    codec, fps, frames = decoded(out / "samples/0000_0.mp4")
    assert codec == "h264" and fps == 10.0 and frames.shape == (4, 32, 32, 3)
    assert (out / "prompts/0000_0.txt").read_text() == "a red circle"
    assert Image.open(out / "style/0000.png").size == (512, 512)

    before = (out / "samples/0000_0.mp4").read_bytes()
    assert sample(tmp_path, "--prompt", "a red circle", "--style", files / "s0.png", "--out", out) == 2
    assert "already holds" in capsys.readouterr().err and (out / "samples/0000_0.mp4").read_bytes() == before
    assert sample(tmp_path, "--prompt", "a red circle", "--style", files / "s0.png", "--out", out,
                  "--seed", 5, "--overwrite") == 0
    assert (out / "samples/0000_0.mp4").read_bytes() != before


def test_prompts_file_with_gifs(files, tmp_path):
    out = tmp_path / "out"
    assert sample(tmp_path, "--prompts", files / "prompts.txt", "--style", files / "s1.jpg", "--out", out,
                  "--gif") == 0
    for i, prompt in enumerate(["a red circle", "two blue squares"]):
        assert decoded(out / f"samples/000{i}_0.mp4")[2].shape == (4, 32, 32, 3)
        assert Image.open(out / f"samples/000{i}_0.gif").n_frames == 4
        assert (out / f"prompts/000{i}_0.txt").read_text() == prompt


def test_eval_json_with_several_references(files, tmp_path):
    out = tmp_path / "out"
    assert sample(tmp_path, "--eval-json", files / "eval.json", "--eval-root", files, "--out", out) == 0
    assert sorted(os.listdir(out / "samples")) == ["0000_0.mp4", "0001_0.mp4"]
    assert sorted(os.listdir(out / "style")) == ["0000.png", "0001_00.png", "0001_01.png"]
    assert (out / "prompts/0001_0.txt").read_text() == "a blue square"
    for name in ("0000_0.mp4", "0001_0.mp4"):
        assert decoded(out / "samples" / name)[2].shape == (4, 32, 32, 3)


def test_image_mode_writes_png_images_with_progress_bars(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert sample(tmp_path, "--mode", "image", "--image-format", "png", "--prompt", "a red circle",
                  "--style", files / "s2.png", "--out", out, "--progress") == 0
    captured = capsys.readouterr()
    assert "wrote 1 images (1x32x32" in captured.out
    assert "samples: 100%" in captured.err and "steps: 100%" in captured.err
    with Image.open(out / "samples/0000_0.png") as image:
        assert image.size == (32, 32) and image.mode == "RGB"


def test_toy_config_runs_on_a_fresh_machine(files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["sample", f"--config={TOY}", "--config.sampling.steps=2", f"--config.workdir={tmp_path / 'work'}",
            "--prompt", "a circle", "--style", str(files / "s0.png"), "--out", str(out)]
    assert main(argv) == 0
    assert "weights: randomly initialised tiny model" in capsys.readouterr().out
    from configs.toy import get_config

    sampling = get_config().sampling
    assert decoded(out / "samples/0000_0.mp4")[2].shape == (sampling.frames, sampling.height, sampling.width, 3)


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory):
    """A converted directory of a tiny model with twice the U-Net channels."""
    from configs.inference import get_config
    from stylecrafter_jax.checkpoints.pretrained import save_pretrained
    from stylecrafter_jax.sampling.weights import random_params, to_components

    model = get_config("tiny").model
    model.unet.model_channels = 64
    directory = str(tmp_path_factory.mktemp("other") / "weights")
    save_pretrained(directory, to_components(random_params(model, 0)), {})
    return directory


BAD = {
    "missing style": (["--prompt", "x", "--style", "{f}/gone.png"],
                      "style image '{f}/gone.png' (entry 0) does not exist"),
    "corrupt style": (["--prompt", "x", "--style", "{f}/corrupt.png"], "style image '{f}/corrupt.png' cannot be read"),
    "directory style": (["--prompt", "x", "--style", "{f}"], "style image '{f}' (entry 0) is a directory"),
    "empty prompts": (["--prompts", "{f}/empty.txt", "--style", "{f}/s0.png"],
                      "prompts file '{f}/empty.txt' holds no prompt"),
    "entry without style_path": (["--eval-json", "{f}/no_style.json", "--eval-root", "{f}"],
                                 "no_style.json', entry 0: missing 'style_path'"),
    "size not divisible": (["--prompt", "x", "--style", "{f}/s0.png", "--config.sampling.height=40"],
                           "sampling.height: got 40, expected a positive multiple of 16"),
    "zero steps": (["--prompt", "x", "--style", "{f}/s0.png", "--config.sampling.steps=0"],
                   "sampling.steps: got 0, expected an integer >= 1"),
    "no input": (["--style", "{f}/s0.png"], "give exactly one of --prompt, --prompts or --eval-json"),
    "two inputs": (["--prompt", "x", "--prompts", "{f}/prompts.txt", "--style", "{f}/s0.png"],
                   "got ['--prompt', '--prompts']"),
    "style with eval json": (["--eval-json", "{f}/eval.json", "--eval-root", "{f}", "--style", "{f}/s0.png"],
                             "--style cannot be combined with --eval-json"),
    "eval json without root": (["--eval-json", "{f}/eval.json"], "--eval-json needs --eval-root"),
    "unknown override": (["--prompt", "x", "--style", "{f}/s0.png", "--config.sampling.stepz=3"], "stepz"),
    "stray argument": (["--prompt", "x", "--style", "{f}/s0.png", "extra"], "unexpected arguments ['extra']"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_clear_error_and_writes_nothing(files, tmp_path, capsys, case):
    args, message = BAD[case]
    out = tmp_path / "out"
    status = sample(tmp_path, *[a.format(f=files) for a in args], "--out", out)
    err = capsys.readouterr().err
    assert status == 2 and message.format(f=files) in err, err
    assert not out.exists()


def test_checkpoint_of_another_model_config(files, tmp_path, capsys, other_checkpoint):
    out = tmp_path / "out"
    status = sample(tmp_path, "--prompt", "x", "--style", files / "s0.png", "--checkpoint", other_checkpoint,
                    "--out", out)
    err = capsys.readouterr().err
    assert status == 2 and f"checkpoint '{other_checkpoint}' does not fit the 'tiny' model config" in err
    assert "mis-shaped" in err or "shape" in err
    assert not out.exists()


def test_video_mode_on_an_image_only_model_is_refused_naming_a_video_config(files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["sample", f"--config={TOY}", "--mode", "video", "--prompt", "a circle", "--style", str(files / "s0.png"),
            "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mode video" in err and "configs/inference.py" in err, err
    assert not out.exists()
