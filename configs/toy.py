"""The toy: a tiny StyleCrafter trained end to end on generated style images, on a laptop CPU.

python -m stylecrafter_jax.train --config=configs/toy.py          (a laptop CPU is enough)
python -m stylecrafter_jax.train --config=configs/toy.py:quick    (the same pipeline shortened, for a smoke run)

1. generates the toy style stream (4 shapes as content, captioned without style words; 4 styles that
   differ in palette and texture; each style reference is another image of the target's style);
2. trains a tiny pixel-space base model (stage "full", 16x16 RGB, no VAE) into runs/toy/base;
3. trains the style adapter on top of the frozen base (stage "stage1") into runs/toy;
4. samples held-out prompts and references with the adapter at initialisation and trained, scores them
   with a palette/texture style classifier and a shape classifier, writes the samples to
   runs/toy/samples and the scores (toy/style_accuracy, toy/content_accuracy, and toy/init_*) to
   runs/toy/metrics.jsonl.
Expected (full run, guidance text 3 / style 3, 25 DDIM steps, eta 1, x0 clipped to [-1, 1]): style
accuracy >= 0.8 trained vs about 1/4 at initialisation; content >= 0.6.
Sampling afterwards: python -m stylecrafter_jax.sample --config=configs/toy.py --prompt "a circle" \
    --style IMAGE --out samples/toy   (uses runs/toy/export, or a random tiny model if there is none).
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.defaults import base_config
from stylecrafter_jax.sampling.settings import get_sampling_config

IMAGE_SIZE = 16
STYLE_SIZE = 28  # the tiny CLIP vision tower's input


def toy_sampling() -> ml_collections.ConfigDict:
    """Three-branch guidance (text+style, text, none) on single 16x16 frames, x0 clipped to the pixel range."""
    sampling = get_sampling_config("video")
    sampling.update(height=IMAGE_SIZE, width=IMAGE_SIZE, frames=1, steps=25, text_scale=3.0, style_scale=3.0,
                    clip_x0=1.0)
    return sampling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The toy config; arg "quick" shortens both phases and the scoring."""
    arg = parse_arg(arg, quick=False)
    config = base_config("tiny", "stage1")
    with config.unlocked():
        config.workdir = "runs/toy"
        model = config.model
        model.latent = "pixels"
        model.frames, model.latent_height, model.latent_width = 1, IMAGE_SIZE, IMAGE_SIZE
        model.unet.in_channels = model.unet.out_channels = 3
        model.unet.attention_resolutions = (2,)  # attention (and style) at 8x8 only: 30% fewer FLOPs
        # Pixels need a noisier end than latents: under the reference's schedule (linear_end 0.012) 6.8%
        # of the image survives t = T, its mean colour is readable from 256 pixels of noise, and the
        # model paints the colour it reads from the sampling noise instead of the reference's palette.
        model.diffusion.linear_end = 0.02  # 1.5% survives t = T
        config.data = ml_collections.ConfigDict(dict(
            kind="toy", seed=0,
            toy=dict(batch_size=16, image_size=IMAGE_SIZE, style_size=STYLE_SIZE, num_styles=4),
            captions=dict(rules=(), tidy=True)))
        config.train.update(log_every=50, checkpoint_every=500, keep_checkpoints=2, warmup_steps=100,
                            schedule="warmup", grad_clip=1.0, weight_decay=0.0)
        # Palette and shape are decided at high noise, where the plain eps loss gives x0 almost no weight
        # (ᾱ_t): the v weighting 1/ᾱ_t restores it, capped at 20 so that the low-noise detail still counts.
        weighting = dict(loss_weighting="v", loss_weight_cap=20.0, timestep_sampling="uniform")
        # The two phases (the trainer's train section, phase by phase) and the scoring of the samples.
        config.toy = ml_collections.ConfigDict(dict(
            base=dict(steps=3000, learning_rate=1e-3, drop_text=0.1, **weighting),
            adapter=dict(steps=1000, learning_rate=1e-3, **weighting),
            eval=dict(samples=96, seed=1000, batch_size=32),
        ))
        config.sampling = toy_sampling()

    if arg.quick:  # the same pipeline, shortened
        config.workdir = "runs/toy-quick"
        config.toy.base.steps, config.toy.adapter.steps, config.toy.eval.samples = 200, 100, 16
    return config
