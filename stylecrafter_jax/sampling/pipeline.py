"""The sampling pipeline: prompts and style images in, uint8 videos or images out, in three jitted calls.

1. conditioning (one jit): CLIP text context of the prompts and of "", CLIP vision tokens of the style
   references (several per sample concatenated), the StyleAdapter's style tokens and per-layer scales
   (once per sample), and the style multipliers (1 + s)·style_weight;
2. guided DDIM (`DDIMSampler`, one jit holding the lax.scan over steps; all guidance branches of a step
   in one batched U-Net call), noise per sample from fold_in(seed, index);
3. VAE decode of every frame of the batch as one call (skipped for a pixel-space model), clamped to
   [-1, 1] and mapped to uint8 as the official code saves it: floor((x + 1) / 2 · 255).
Each jitted function is built once per pipeline, so calls of the same shapes reuse the compiled code.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylecrafter_jax.conditioning.encoders import decode_video, encode_style_images, encode_text_context
from stylecrafter_jax.conditioning.preprocess import clip_pixels
from stylecrafter_jax.conditioning.tokenizer import ClipTokenizer
from stylecrafter_jax.diffusion.ddim import DDIMSampler, sample_keys
from stylecrafter_jax.diffusion.guidance import GuidanceInputs, make_guided_denoiser, style_multipliers
from stylecrafter_jax.diffusion.schedule import schedule_from_config
from stylecrafter_jax.errors import ConfigError, ShapeError
from stylecrafter_jax.models.build import build_adapter, build_unet
from stylecrafter_jax.models.clip import OpenCLIPTextTower, OpenCLIPVisionTower
from stylecrafter_jax.models.vae import AutoencoderKL
from stylecrafter_jax.sampling.settings import check_sampling, pixels_per_latent, required_components


def build_encoders(model: ml_collections.ConfigDict
                   ) -> tuple[OpenCLIPTextTower, OpenCLIPVisionTower, AutoencoderKL | None]:
    """The text tower, vision tower and VAE (None for a pixel-space model) of the `model` section."""
    common = dict(attention=model.attention)
    text = OpenCLIPTextTower(**model.text_encoder.to_dict(), **common)
    vision = OpenCLIPVisionTower(**model.image_encoder.to_dict(), **common)
    vae = AutoencoderKL(**model.vae.to_dict(), **common) if "vae" in required_components(model) else None
    if text.width != model.unet.context_dim:
        raise ConfigError(f"model.text_encoder.width {text.width} must equal model.unet.context_dim "
                          f"{model.unet.context_dim}")
    if vision.width != model.adapter.image_dim:
        raise ConfigError(f"model.image_encoder.width {vision.width} must equal model.adapter.image_dim "
                          f"{model.adapter.image_dim}")
    channels = vae.embed_dim if vae is not None else 3
    if channels != model.unet.in_channels:
        raise ConfigError(f"model.unet.in_channels {model.unet.in_channels} must equal "
                          f"{'model.vae.embed_dim' if vae is not None else 'the 3 pixel channels'} {channels}")
    return text, vision, vae


def to_uint8(video: jax.Array) -> jax.Array:
    """[-1, 1] pixels → uint8 as the official saving code: clamp, (x + 1) / 2 · 255, truncated."""
    return ((jnp.clip(video, -1.0, 1.0) + 1.0) / 2.0 * 255.0).astype(jnp.uint8)


class SamplingPipeline:
    """Generates stylized videos (sampling.mode "video") or images ("image") from prompts and style references.

    params: {"unet": the U-Net with its style branches, "adapter": the StyleAdapter, "text_encoder",
    "image_encoder", and "vae" unless the model is pixel-space}, unboxed. `sampling` is the config's
    sampling section. With `report_steps`, the attribute `on_step(k)`, when set, is called from the
    device after DDIM step k of every batch (for progress bars); the host callback this needs keeps
    XLA's persistent compilation cache from storing the sampler, so it is off by default.
    """

    def __init__(self, model: ml_collections.ConfigDict, sampling: ml_collections.ConfigDict,
                 params: dict[str, Any], tokenizer: ClipTokenizer, *, report_steps: bool = False):
        check_sampling(sampling, model)
        names = required_components(model)
        missing = [name for name in names if name not in params]
        if missing:
            raise ConfigError(f"sampling params: missing components {missing}, expected {list(names)}")
        self.model, self.sampling = model, sampling
        self.params = jax.device_put({name: params[name] for name in names})
        self.tokenizer = tokenizer
        self.unet = build_unet(model)
        self.adapter = build_adapter(model)
        self.text_tower, self.vision_tower, self.vae = build_encoders(model)
        self.report_steps = report_steps
        self.on_step: Callable[[int], None] | None = None
        denoise = make_guided_denoiser(self._model_fn, mode=sampling.mode, text_scale=sampling.text_scale,
                                       style_scale=sampling.style_scale, image_scale=sampling.image_scale,
                                       form=sampling.guidance_form)
        self.sampler = DDIMSampler(denoise, schedule_from_config(model), num_steps=sampling.steps, eta=sampling.eta,
                                   clip_x0=sampling.clip_x0,
                                   on_step=self._step_done if report_steps else None)
        self._empty_tokens = jnp.asarray(tokenizer([""]))
        self._condition = jax.jit(self._condition_fn)
        self._decode = jax.jit(self._decode_fn)

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(frames, height / f, width / f, channels) of one sample's latents."""
        f = pixels_per_latent(self.model)
        return (self.sampling.frames, self.sampling.height // f, self.sampling.width // f,
                self.model.unet.in_channels)

    @property
    def num_steps(self) -> int:
        """Denoising steps per batch."""
        return self.sampler.num_steps

    def _step_done(self, step: int) -> None:
        if self.on_step is not None:
            self.on_step(step)

    def _model_fn(self, params: Any, x: jax.Array, t: jax.Array, context: jax.Array,
                  style_scales: jax.Array) -> jax.Array:
        return self.unet.apply({"params": params}, x, t, context, style_scales)

    def _condition_fn(self, params: dict, tokens: jax.Array, style_images: jax.Array,
                      style_weight: jax.Array) -> GuidanceInputs:
        """GuidanceInputs of a batch, U-Net params left out: tokens (B, 77), style images (B, n_ref, S, S, 3)."""
        text = encode_text_context(self.text_tower, params["text_encoder"], tokens)
        empty = encode_text_context(self.text_tower, params["text_encoder"], self._empty_tokens)
        pixels = clip_pixels(style_images, self.vision_tower.image_size)
        image_tokens, _ = encode_style_images(self.vision_tower, params["image_encoder"], pixels)
        style, scales = self.adapter.apply({"params": params["adapter"]}, image_tokens, text)
        return GuidanceInputs(params=None, text=text, empty_text=empty, style=style,
                              multipliers=style_multipliers(scales, style_weight))

    def _decode_fn(self, params: dict, latents: jax.Array) -> jax.Array:
        if self.vae is None:
            return to_uint8(latents)
        return to_uint8(decode_video(self.vae, params["vae"], latents))

    def condition(self, prompts: Sequence[str], style_images: np.ndarray | jax.Array) -> GuidanceInputs:
        """Text and style conditioning of a batch: one prompt and (n_ref, S, S, 3) style images per sample."""
        style_images = jnp.asarray(style_images, jnp.float32)
        if style_images.ndim != 5 or style_images.shape[0] != len(prompts) or style_images.shape[-1] != 3:
            raise ShapeError(f"style_images: got shape {style_images.shape}, expected ({len(prompts)}, n_ref, "
                             "size, size, 3) in [-1, 1], one set of references per prompt")
        tokens = jnp.asarray(self.tokenizer(list(prompts)))
        inputs = self._condition(self.params, tokens, style_images, jnp.float32(self.sampling.style_weight))
        return inputs._replace(params=self.params["unet"])

    def latents(self, prompts: Sequence[str], style_images: np.ndarray | jax.Array, indices: Sequence[int],
                seed: int) -> jax.Array:
        """Denoised latents (B, t, h / f, w / f, c); sample i draws its noise from fold_in(seed, indices[i])."""
        if len(indices) != len(prompts):
            raise ShapeError(f"indices: got {len(indices)} for {len(prompts)} prompts, expected one per prompt")
        cond = self.condition(prompts, style_images)
        return self.sampler.sample(cond, sample_keys(seed, list(indices)), self.latent_shape)

    def decode(self, latents: jax.Array) -> np.ndarray:
        """uint8 pixels (B, t, h, w, 3) of latents, every frame of the batch in one VAE call."""
        return np.asarray(self._decode(self.params, latents))

    def __call__(self, prompts: Sequence[str], style_images: np.ndarray | jax.Array, indices: Sequence[int],
                 seed: int) -> np.ndarray:
        """uint8 videos (B, frames, height, width, 3); images have frames = 1."""
        return self.decode(self.latents(prompts, style_images, indices, seed))
