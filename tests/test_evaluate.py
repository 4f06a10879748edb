"""`python -m stylecrafter_jax.evaluate` end to end on generated eval JSONs and sample folders, good and bad."""

import json
import os

import av
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor

from stylecrafter_jax import evaluate
from stylecrafter_jax.conditioning.preprocess import CLIP_MEAN, CLIP_STD
from stylecrafter_jax.evaluation.preprocess import IMAGENET_MEAN, IMAGENET_STD
from stylecrafter_jax.sampling.io import video_codec, write_mp4
from tests.evaluation.tiny_eval import moving_video, write_eval_set, write_metric_weights

ENTRIES = [("A fox in the snow.", "styles/a.png"),
           ("A fox in the snow.", "styles/b.jpg"),
           ("A boat on a lake.", ["multi/s1/0.png", "multi/s1/1.png", "multi/s1/2.png"]),
           ("A boat on a lake.", "styles/a.png")]
H, W = 32, 64  # crop offsets are whole pixels at 28 and 32 px, so transformers' processor agrees with ours


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_metric_weights(str(tmp_path_factory.mktemp("weights")))


def write_sample(run: str, name: str, prompt: str, video: np.ndarray, kind: str = "mp4") -> None:
    """One sample in the official layout: samples/NAME.mp4, a frames/NAME/ folder or samples/NAME.jpg."""
    if kind == "mp4":
        write_mp4(os.path.join(run, "samples", name + ".mp4"), video, 10, video_codec())
    elif kind == "frames":
        os.makedirs(os.path.join(run, "frames", name))
        for t, frame in enumerate(video):
            Image.fromarray(frame).save(os.path.join(run, "frames", name, f"frame{t:03d}.png"))
    else:
        os.makedirs(os.path.join(run, "samples"), exist_ok=True)
        Image.fromarray(video[0]).save(os.path.join(run, "samples", name + ".png"))
    os.makedirs(os.path.join(run, "prompts"), exist_ok=True)
    with open(os.path.join(run, "prompts", name + ".txt"), "w") as f:
        f.write(prompt)


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory):
    """An eval root with single and multi-reference entries and a run folder: mp4, PNG frames, a 6-frame mp4."""
    root = str(tmp_path_factory.mktemp("eval_data"))
    json_path = write_eval_set(root, ENTRIES)
    run = str(tmp_path_factory.mktemp("run"))
    for entry, (prompt, _) in enumerate(ENTRIES):
        frames = 6 if entry == 3 else 4
        write_sample(run, f"{entry:04d}_0", prompt, moving_video(entry, frames, H, W),
                     "frames" if entry == 1 else "mp4")
    return root, json_path, run


def flags(weights, json_path, root, out, *extra, arg="video,tiny"):
    return ["evaluate", f"--config=configs/evaluation.py:{arg}", f"--config.clip.checkpoint={weights['clip']}",
            "--config.clip.format=hf", f"--config.dino.checkpoint={weights['dino']}", "--eval-json", json_path,
            "--eval-root", root, "--out", out, *extra]


def load(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def test_scores_a_run_folder_writes_every_output_and_is_repeatable(weights, eval_set, tmp_path, capsys):
    root, json_path, run = eval_set
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    assert evaluate.main(flags(weights, json_path, root, first, "--samples", run)) == 0
    assert evaluate.main(flags(weights, json_path, root, second, "--samples", run)) == 0
    assert "scored 4 of 4 requested samples; 1 cut to the expected frame count" in capsys.readouterr().out
    doc = load(first)
    assert (doc["requested_samples"], doc["scored_samples"], doc["skipped_samples"], doc["complete"]) == (4, 4, 0, True)
    assert doc["truncated"] == ["0003_0"]
    assert doc["metrics"] == load(second)["metrics"] and doc["samples"] == load(second)["samples"]
    rows = {row["name"]: row for row in doc["samples"]}
    assert rows["0002_0"]["refs"] == 3 and rows["0002_0"]["style"] == "multi/s1"
    for row in rows.values():
        assert row["frames"] == 4 and -1 <= row["clip_text"] <= 1 and -1 <= row["dino_style"] <= 1
        assert 0 <= row["warp_error"] < 0.05 and 0.5 < row["warp_valid_fraction"] <= 1
    means = doc["metrics"]
    np.testing.assert_allclose(means["clip_style"], np.mean([r["clip_style"] for r in rows.values()]), rtol=1e-12)
    assert doc["settings"]["flow"]["method"] == "dis" and doc["settings"]["frames"] == 4
    assert doc["settings"]["generation"] is None
    for name in ("per_style.csv", "per_style.md", "per_prompt.csv", "per_prompt.md"):
        assert os.path.getsize(os.path.join(first, name)) > 0
    with open(os.path.join(first, "per_style.csv")) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("style,samples,clip_text") and len(lines) == 4  # a.png (2 samples), b.jpg, multi/s1
    assert lines[1].startswith("styles/a.png,2,")
    with open(os.path.join(first, "per_prompt.md")) as f:
        assert f.read().count("\n") == 4  # header, rule, 2 prompts
    sheets = sorted(os.listdir(os.path.join(first, "contact_sheets")))
    assert sheets == ["0000_0.png", "0001_0.png", "0002_0.png", "0003_0.png"]
    sheet = np.asarray(Image.open(os.path.join(first, "contact_sheets", "0002_0.png")))
    assert sheet.shape == (32, 3 * 32 + 4 + 4 * 64 + 7 * 4, 3)  # 3 references, a gap tile, 4 frames, 4-px gaps


def test_scores_match_an_independent_transformers_computation(weights, eval_set, tmp_path):
    root, json_path, run = eval_set
    out = str(tmp_path / "out")
    assert evaluate.main(flags(weights, json_path, root, out, "--samples", run, "--limit", "3")) == 0
    doc = load(out)
    assert doc["requested_samples"] == 3
    row = {r["name"]: r for r in doc["samples"]}["0002_0"]
    with av.open(os.path.join(run, "samples", "0002_0.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    refs = [np.asarray(Image.open(os.path.join(root, p)).convert("RGB")) for p in ENTRIES[2][1]]

    def pixels(images, size, mean, std):
        processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                       resample=3, image_mean=list(mean), image_std=list(std))
        return processor(images=images, return_tensors="pt")["pixel_values"]

    def unit(x):
        return x / x.norm(dim=-1, keepdim=True)

    with torch.no_grad():
        frame_clip = unit(weights["vision_model"](pixels(frames, 28, CLIP_MEAN, CLIP_STD)).image_embeds)
        ref_clip = unit(weights["vision_model"](pixels(refs, 28, CLIP_MEAN, CLIP_STD)).image_embeds)
        dino = weights["dino_model"]
        frame_dino = unit(dino(pixels(frames, 32, IMAGENET_MEAN, IMAGENET_STD)).last_hidden_state[:, 0])
        ref_dino = unit(dino(pixels(refs, 32, IMAGENET_MEAN, IMAGENET_STD)).last_hidden_state[:, 0])
        from stylecrafter_jax.conditioning.tokenizer import load_tokenizer
        tokens = torch.from_numpy(load_tokenizer()([ENTRIES[2][0]])).long()
        text = unit(weights["text_model"](tokens).text_embeds)
    np.testing.assert_allclose(row["clip_text"], (frame_clip @ text.T).mean().item(), atol=1e-4)
    np.testing.assert_allclose(row["clip_style"], (frame_clip @ ref_clip.T).mean().item(), atol=1e-4)
    np.testing.assert_allclose(row["dino_style"], (frame_dino @ ref_dino.T).mean().item(), atol=1e-4)
    np.testing.assert_allclose(row["clip_temp"], (frame_clip[:-1] * frame_clip[1:]).sum(-1).mean().item(), atol=1e-4)


def test_bad_inputs_are_skipped_with_counts_or_refused(weights, eval_set, tmp_path, capsys):
    root, _, run = eval_set
    entries = ENTRIES + [("A fox in the snow.", "styles/missing.png"), ("A dog.", "styles/b.jpg"),
                         ("A cat.", "styles/b.jpg")]
    json_path = write_eval_set(root, ENTRIES, "bad.json")  # writes only the existing styles
    with open(json_path, "w") as f:
        json.dump([{"prompt": p, "style_path": s} for p, s in entries], f)
    bad_run = str(tmp_path / "bad_run")
    for entry, (prompt, _) in enumerate(entries):
        if entry != 6:  # 0006_0 has no sample file
            write_sample(bad_run, f"{entry:04d}_0", prompt, moving_video(entry, 2 if entry == 5 else 4, H, W))
    out = str(tmp_path / "out")
    assert evaluate.main(flags(weights, json_path, root, out, "--samples", bad_run)) == 0
    assert "scored 4 of 7 requested samples; 3 skipped" in capsys.readouterr().out
    doc = load(out)
    assert (doc["requested_samples"], doc["scored_samples"], doc["complete"]) == (7, 4, False)
    reasons = {s["name"]: s["reason"] for s in doc["skipped"]}
    assert "styles/missing.png" in reasons["0004_0"] and "does not exist" in reasons["0004_0"]
    assert "has 2 frame(s), expected 4" in reasons["0005_0"]
    assert "no sample file 0006_0.*" in reasons["0006_0"]
    assert len(os.listdir(os.path.join(out, "contact_sheets"))) == 4

    strict = flags(weights, json_path, root, str(tmp_path / "strict"), "--samples", bad_run,
                   "--config.on_missing=error")
    assert evaluate.main(strict) == 2
    assert "sample 0004_0" in capsys.readouterr().err

    empty = os.path.join(root, "empty.json")
    with open(empty, "w") as f:
        f.write("[]")
    assert evaluate.main(flags(weights, empty, root, str(tmp_path / "e"), "--samples", bad_run)) == 2
    assert "non-empty list" in capsys.readouterr().err

    nothing = str(tmp_path / "nothing")
    os.makedirs(nothing)
    assert evaluate.main(flags(weights, json_path, root, str(tmp_path / "n"), "--samples", nothing)) == 2
    assert "no sample could be scored out of 7 requested" in capsys.readouterr().err
    assert load(str(tmp_path / "n"))["scored_samples"] == 0

    wrong = str(tmp_path / "wrong_prompts")
    write_sample(wrong, "0000_0", "Another prompt.", moving_video(0, 4, H, W))
    assert evaluate.main(flags(weights, json_path, root, str(tmp_path / "w"), "--samples", wrong)) == 2
    assert "does not match this JSON" in capsys.readouterr().err

    no_weights = flags(weights, json_path, root, str(tmp_path / "c"), "--checkpoint", str(tmp_path / "no"))
    assert evaluate.main(no_weights) == 2
    assert "expected a converted checkpoint" in capsys.readouterr().err
    both = flags(weights, json_path, root, str(tmp_path / "c"), "--checkpoint", run, "--samples", run)
    assert evaluate.main(both) == 2
    assert "exactly one of --samples" in capsys.readouterr().err
    assert evaluate.main(flags(weights, json_path, root, str(tmp_path / "c"))) == 2
    assert "exactly one of --samples" in capsys.readouterr().err


def test_image_mode_scores_single_frames(weights, eval_set, tmp_path, capsys):
    root, json_path, _ = eval_set
    run = str(tmp_path / "images")
    for entry, (prompt, _) in enumerate(ENTRIES):
        write_sample(run, f"{entry:04d}_0", prompt, moving_video(entry, 1, H, W), "image")
    out = str(tmp_path / "out")
    assert evaluate.main(flags(weights, json_path, root, out, "--samples", run, arg="image,tiny")) == 0
    doc = load(out)
    assert doc["scored_samples"] == 4 and doc["metrics"]["clip_temp"] is None and doc["metrics"]["warp_error"] is None
    assert all(row["frames"] == 1 and row["clip_temp"] is None for row in doc["samples"])
    assert "  clip_temp: n/a" in capsys.readouterr().out


def test_a_config_of_another_kind_is_one_line_naming_the_evaluation_config(tmp_path, capsys):
    toy = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "toy.py")
    assert evaluate.main(["evaluate", f"--config={toy}", "--samples", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an evaluation config" in err and "configs/evaluation.py:video" in err, err
    assert not (tmp_path / "o").exists()
