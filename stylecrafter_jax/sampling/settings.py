"""The `sampling` config block and what depends on the model: defaults, components, pixel sizes, modes, checks.

Defaults are those of the shipped StyleCrafter runs (scripts/run_infer_video.sh and run_infer_image.sh).
Light on purpose (no model code), so configs and the command line can use it before anything is built.
"""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.diffusion.ddim import sampler_steps
from stylecrafter_jax.diffusion.guidance import GUIDANCE_FORMS, GUIDANCE_MODES
from stylecrafter_jax.errors import ConfigError

LATENT_KINDS = ("vae", "pixels")
_SIZE_KEYS = ("height", "width", "frames")
_MODE_SIZES = {"video": (320, 512, 16), "image": (512, 512, 1)}


def get_sampling_config(mode: str = "video") -> ml_collections.ConfigDict:
    """Sampling settings for mode "video" (16×320×512) or "image" (512×512)."""
    if mode not in _MODE_SIZES:
        raise ConfigError(f"sampling.mode: got {mode!r}, expected one of {tuple(_MODE_SIZES)}")
    height, width, frames = _MODE_SIZES[mode]
    return ml_collections.ConfigDict(dict(
        mode=mode,
        sampler="ddim",             # "ddim" | "dpmpp_2m" (DPM-Solver++(2M): deterministic, eta unused)
        steps=50,                   # uniform spacing: timesteps 981, 961, ..., 1
        timestep_spacing="uniform",  # "uniform" | "uniform_trailing" (999, 979, ..., 19; DynamiCrafter 512/1024)
        eta=1.0,                    # 1.0 = stochastic, as shipped; 0.0 = deterministic DDIM
        clip_x0=0.0,                # 0 = no clipping of the x0 estimate (latents); pixel models: 1.0
        text_scale=15.0,            # λt, video guidance
        style_scale=7.5,            # λs, video guidance
        image_scale=6.0,            # λ, image guidance (the HF demo uses 7.5)
        guidance_form="official",   # "official" = released code, anchored at e_ts; "paper" = anchored at e_u
        image_cond_scale=None,      # image-to-video: None = 2 branches; s = DynamiCrafter's --cfg_img (3 branches)
        guidance_rescale=0.0,       # φ of rescale_noise_cfg; 0 = off (DynamiCrafter 512/1024: 0.7)
        guidance_interval=None,     # None = guide every step; (start, stop) = only visited steps start..stop-1
        style_weight=1.0,           # global style strength, 0-2; multiplies (1 + ScaleEncoder output)
        fps=10,
        seed=123,
        height=height,
        width=width,
        frames=frames,
    ))


def required_components(model: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The components sampling needs: the VAE only when the model diffuses VAE latents (`model.latent`)."""
    kind = model.get("latent", "vae")
    if kind not in LATENT_KINDS:
        raise ConfigError(f"model.latent: got {kind!r}, expected one of {LATENT_KINDS}")
    return ("unet", "adapter", "text_encoder", "image_encoder") + (("vae",) if kind == "vae" else ())


def pixels_per_latent(model: ml_collections.ConfigDict) -> int:
    """The VAE's downsampling factor (8 at full size), or 1 for a pixel-space model."""
    return 2 ** (len(model.vae.ch_mult) - 1) if "vae" in required_components(model) else 1


def size_multiple(model: ml_collections.ConfigDict) -> int:
    """What height and width must divide by: the VAE factor times the U-Net's 2^(levels − 1) (64 at full size)."""
    return pixels_per_latent(model) * 2 ** (len(model.unet.channel_mult) - 1)


def check_sampling(sampling: ml_collections.ConfigDict, model: ml_collections.ConfigDict) -> None:
    """ConfigError naming the first sampling setting that cannot work with this model."""
    multiple = size_multiple(model)
    for name in ("height", "width"):
        value = sampling[name]
        if not isinstance(value, int) or value < multiple or value % multiple:
            raise ConfigError(f"sampling.{name}: got {value!r}, expected a positive multiple of {multiple} "
                              f"(the VAE factor times the U-Net's downsampling, {model.size} model)")
    if sampling.mode not in GUIDANCE_MODES:
        raise ConfigError(f"sampling.mode: got {sampling.mode!r}, expected one of {GUIDANCE_MODES}")
    if sampling.guidance_form not in GUIDANCE_FORMS:
        raise ConfigError(f"sampling.guidance_form: got {sampling.guidance_form!r}, expected one of "
                          f"{GUIDANCE_FORMS}")
    sampler_steps(sampling.sampler, sampling.steps, sampling.timestep_spacing, int(model.diffusion.num_timesteps),
                  sampling.guidance_interval)
    if not 0.0 <= sampling.guidance_rescale <= 1.0:
        raise ConfigError(f"sampling.guidance_rescale: got {sampling.guidance_rescale!r}, expected a value in "
                          "[0, 1] (0 = off)")
    scale = sampling.image_cond_scale
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 0):
        raise ConfigError(f"sampling.image_cond_scale: got {scale!r}, expected None (two-branch guidance) or "
                          "a scale >= 0")
    if not 0.0 <= sampling.eta <= 1.0:
        raise ConfigError(f"sampling.eta: got {sampling.eta!r}, expected 0 <= eta <= 1")
    if sampling.mode == "image" and sampling.frames != 1:
        raise ConfigError(f"sampling.frames: got {sampling.frames!r}, expected 1 in image mode")
    if not isinstance(sampling.frames, int) or sampling.frames < 1:
        raise ConfigError(f"sampling.frames: got {sampling.frames!r}, expected an integer >= 1")
    if not 0.0 <= sampling.style_weight <= 2.0:
        raise ConfigError(f"sampling.style_weight: got {sampling.style_weight!r}, expected a value in [0, 2]")


def switch_mode(sampling: ml_collections.ConfigDict, model: ml_collections.ConfigDict, mode: str) -> None:
    """Set `sampling.mode` in place, with the sizes that go with it.

    Sizes still at the old mode's defaults (320×512×16 video) take the new mode's (512×512 image);
    other sizes keep height and width, with frames 1 for images and `model.frames` for videos.
    """
    if mode not in GUIDANCE_MODES:
        raise ConfigError(f"--mode: got {mode!r}, expected one of {GUIDANCE_MODES}")
    if mode == sampling.mode:
        return
    old, new = get_sampling_config(sampling.mode), get_sampling_config(mode)
    if all(sampling[key] == old[key] for key in _SIZE_KEYS):
        for key in _SIZE_KEYS:
            sampling[key] = new[key]
    else:
        sampling.frames = 1 if mode == "image" else model.frames
    sampling.mode = mode
