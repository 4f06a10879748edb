"""The `sampling` config block: sampler, steps and eta, guidance scales and form, output size, fps and seed.

Defaults are those of the shipped StyleCrafter runs (scripts/run_infer_video.sh and run_infer_image.sh).
"""

import ml_collections

from stylecrafter_jax.errors import ConfigError

_SIZES = {"video": (320, 512, 16), "image": (512, 512, 1)}


def get_sampling_config(mode: str = "video") -> ml_collections.ConfigDict:
    """Sampling settings for mode "video" (16×320×512) or "image" (512×512)."""
    if mode not in _SIZES:
        raise ConfigError(f"sampling.mode: got {mode!r}, expected one of {tuple(_SIZES)}")
    height, width, frames = _SIZES[mode]
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
