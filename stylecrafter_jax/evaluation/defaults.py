"""The evaluation config: metric encoders and their weights, DINO model, flow method, expected frames, batches.

`arg`: "video" (16 frames expected, default) or "image" (1 frame), optionally ",tiny" (tiny encoders, and
the tiny StyleCrafter model with its 4-frame 64x64 videos, for tests). The `model` and `sampling`
sections are those of the inference config, used when the command generates the samples first.

Recorded choices (the paper does not fix them):
- CLIP: OpenCLIP ViT-H/14 laion2b_s32b_b79k (as the authors said), projected embeddings.
- DINO: ViT-B/16 (`facebook/dino-vitb16`), CLS token after the final LayerNorm.
- Preprocessing of both: bicubic short-side resize to 224 and centre crop (open_clip's transform);
  CLIP mean/std for CLIP, ImageNet mean/std for DINO.
- Flow for the warping error: OpenCV DIS ("medium" preset), or Farnebäck; not the paper's (unknown) model.
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import inference_config
from stylecrafter_jax.models.sizes import ENCODER_SIZES, dino_config
from stylecrafter_jax.sampling.settings import switch_mode

MODES = {"video": 16, "image": 1}  # frames expected per sample; the first mode is the default


def evaluation_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The evaluation config for `arg` = "video" | "image" [",tiny"] (see the module docstring)."""
    arg = parse_arg(arg, mode=tuple(MODES), size=ENCODER_SIZES)
    mode, size = arg.mode, arg.size
    tiny = size == "tiny"
    generation = inference_config("tiny" if tiny else "full", mode)
    switch_mode(generation.sampling, generation.model, mode)
    return ml_collections.ConfigDict(dict(
        mode=mode,
        frames=4 if tiny and mode == "video" else MODES[mode],  # expected per sample; fewer: skipped, more: cut
        samples_per_entry=1,        # samples EEEE_0 .. EEEE_{n-1} of each JSON entry
        limit=0,                    # score only the first `limit` entries (0: all)
        batch_size=4 if tiny else 16,  # images per encoder call and samples per metric call
        on_missing="skip",          # missing style/sample files or too few frames: "skip" (counted) or "error"
        clip=dict(
            size=size,              # stylecrafter_jax.models.sizes encoder size of the OpenCLIP towers
            checkpoint="",          # file or folder: open_clip_pytorch_model.bin / open_clip_model.safetensors
            format="open_clip",     # "open_clip" (open_clip state dict) or "hf" (transformers CLIPModel)
            tokenizer="",           # "": open_clip's BPE vocabulary; else a Hugging Face tokenizer folder
        ),
        dino=dict(
            model=dino_config(size),
            checkpoint="",          # file or folder holding facebook/dino-vitb16's model.safetensors
        ),
        flow=dict(method="dis", dis_preset="medium"),  # "dis" or "farneback"
        contact_sheet=dict(frames=8, height=128 if not tiny else 32),  # frames shown (evenly spaced), pixels
        # generation (--checkpoint): the sampling model and settings, seed, samples per generation batch
        model=generation.model,
        sampling=generation.sampling,
        seed=generation.seed,
        workdir=generation.workdir,
        mesh=generation.mesh,        # devices and processes the generation's batches are split over
        weights_variant=generation.weights_variant,  # "" (the trained weights) or "ema"
        generation_batch_size=1,
    ))
