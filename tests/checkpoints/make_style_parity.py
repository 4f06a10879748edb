"""Writes tests/checkpoints/data/style_parity/ (weights.npz, io.npz) from the official StyleCrafter code: its
U-Net (video `UNetModel` and image `UNet2DModel`) with the style adapter's processors, the adapter, and its
DDIMStyleSampler, at small widths with random weights, run on random inputs. Run by hand, never by the suite
(it needs torch and the official work tree, which is never committed):

    .venv/bin/python -m tests.checkpoints.make_style_parity --official TREE

Weights (tests/torch_references.py `randomize_`, seed 1 for the U-Net, 2 for the adapter, norm scales near 1)
are rounded to float16 with 3 significant bits and inputs to float16 (numpy default_rng(0)) before the official
modules run, so the stored float16 values are exactly what produced the float32 outputs. The sampler runs over
`OfficialLatentDiffusion`, a stand-in holding the official `DDPM.register_schedule` buffers and the official
`LatentDiffusion.apply_model` and `DiffusionWrapper`; its step noise is our sampler's `step_noise`, stored too.
The test (test_style_parity.py) reads the same constants from here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import types
from typing import Any

import ml_collections
import numpy as np

from stylecrafter_jax.diffusion.ddim import sample_keys, step_noise
from stylecrafter_jax.diffusion.schedule import LINEAR_END, LINEAR_START, NUM_TRAIN_TIMESTEPS
from stylecrafter_jax.models.sizes import model_config

OUT = os.path.join(os.path.dirname(__file__), "data", "style_parity")
UNET_PREFIX = "model.diffusion_model."
UNET_FIELDS = dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1,),
                   num_head_channels=8, context_dim=32, temporal_max_distance=16, init_attn_heads=8,
                   init_attn_head_dim=8, style_attention_scaled=False)
"""Our U-Net fields at the official module's widths: its init_attn has 8 heads of num_head_channels, and its
einsum style attention (the path without xformers) is unscaled."""
ADAPTER_FIELDS = dict(image_dim=32, context_dim=32, style_heads=2, style_tokens=4, style_layers=1, scale_heads=2,
                      scale_layers=1, scale_mid_dim=32)
"""Our StyleAdapter fields; the official ScaleEncoder's hidden width is 32."""
BATCH, FRAMES, SIZE, STYLE_IMAGE_TOKENS = 2, 4, 8, 17
TIMESTEPS = [999, 300]
DDIM = dict(steps=4, eta=1.0, text_scale=15.0, style_scale=7.5, seed=0)
"""The guided DDIM run: StyleCrafter's eta and guidance scales (--ddim_eta 1, 15 and 7.5), 4 uniform steps (3 would
be the stride 333 and, with the +1 offset, timestep 1000, which the official code indexes out of bounds)."""


def parity_model() -> ml_collections.ConfigDict:
    """Our model config at the widths of the official modules this script builds."""
    model = model_config("tiny")
    model.unet.update(UNET_FIELDS)
    model.adapter.update(ADAPTER_FIELDS)
    model.frames = FRAMES
    return model


def latent_noise(steps: int) -> np.ndarray:
    """Our sampler's step noise for samples 0..BATCH-1 of seed DDIM["seed"], (steps, B, C, T, H, W) float32."""
    keys = sample_keys(DDIM["seed"], np.arange(BATCH))
    return np.stack([np.moveaxis(np.asarray(step_noise(keys, k, (FRAMES, SIZE, SIZE, 4))), -1, 1)
                     for k in range(steps)])


def _official(tree: str) -> dict[str, Any]:
    """The official classes, imported from the work tree; Lightning and torchvision are stubbed (never used here)."""
    import torch

    lightning = types.ModuleType("pytorch_lightning")
    lightning.LightningModule = torch.nn.Module
    vision, vision_utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
    vision_utils.make_grid = None
    sys.modules.update({"pytorch_lightning": lightning, "torchvision": vision, "torchvision.utils": vision_utils})
    sys.path.insert(0, os.path.abspath(tree))
    try:
        from lvdm.models import ddpm3d
        from lvdm.models.samplers import ddim
        from lvdm.modules.attention import XFORMERS_IS_AVAILBLE, TemporalTransformer
        from lvdm.modules.encoders.adapter import StyleAdapterDualAttnAS
        from lvdm.modules.networks.openaimodel3d import UNet2DModel, UNetModel
    finally:
        sys.path.remove(os.path.abspath(tree))
    if XFORMERS_IS_AVAILBLE:
        raise SystemExit("xformers is installed: the official style attention would be the scaled one, not the "
                         "einsum path the stored data describes; run in a venv without xformers")
    return dict(ddpm3d=ddpm3d, ddim=ddim, TemporalTransformer=TemporalTransformer, UNetModel=UNetModel,
                UNet2DModel=UNet2DModel, StyleAdapterDualAttnAS=StyleAdapterDualAttnAS)


def _unit_scales(module: Any) -> Any:
    """Norm scales around 1 where the official names do not say "norm" (`in_layers.0`, `out.0`, `ln_1`, ...)."""
    import torch

    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and name.endswith("weight") and "norm" not in name:
                p.add_(1.0)
    return module


def _modules(official: dict[str, Any], model: ml_collections.ConfigDict) -> dict[str, Any]:
    """The video and image U-Nets with their adapters (random, rounded, identical weights), quietly built."""
    from benchmarks.official import official_style_unet
    from tests.torch_references import coarse_half, numpy_state_dict, randomize_

    with contextlib.redirect_stdout(io.StringIO()):  # the adapter prints every processor it installs
        unet, adapter = official_style_unet(official, model)
        image_unet, image_adapter = official_style_unet(dict(official, UNetModel=official["UNet2DModel"]), model)
    _unit_scales(randomize_(unet, 1))
    _unit_scales(randomize_(adapter, 2))
    unet_state = {k: coarse_half(v) for k, v in numpy_state_dict(unet).items()}
    adapter_state = {k: coarse_half(v) for k, v in numpy_state_dict(adapter).items()}
    for module, state in ((unet, unet_state), (adapter, adapter_state), (image_unet, unet_state),
                          (image_adapter, adapter_state)):
        _load(module, state)
    for module, state in ((unet, unet_state), (image_unet, unet_state)):  # the processors the adapters share
        assert all(np.array_equal(v, state[k]) for k, v in numpy_state_dict(module).items())
    return dict(unet=unet, adapter=adapter, image_unet=image_unet, image_adapter=image_adapter,
                unet_state=unet_state, adapter_state=adapter_state)


def _load(module: Any, state: dict[str, np.ndarray]) -> None:
    import torch

    module.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()}, strict=True)
    module.eval()


def official_latent_diffusion(official: dict[str, Any], unet: Any) -> Any:
    """What the official DDIM sampler reads of a LatentDiffusion, taken from the official classes: the buffers
    of `DDPM.register_schedule` (the inference yaml's linear schedule), `LatentDiffusion.apply_model` and a
    `DiffusionWrapper` ("crossattn") around `unet`; the VAE and CLIP towers it would also build are left out."""
    import torch

    ddpm3d = official["ddpm3d"]

    class OfficialLatentDiffusion(torch.nn.Module):
        apply_model = ddpm3d.LatentDiffusion.apply_model

        def __init__(self):
            super().__init__()
            self.v_posterior, self.parameterization, self.use_scale = 0.0, "eps", False
            self.device = torch.device("cpu")
            ddpm3d.DDPM.register_schedule(self, beta_schedule="linear", timesteps=NUM_TRAIN_TIMESTEPS,
                                          linear_start=LINEAR_START, linear_end=LINEAR_END)
            self.model = ddpm3d.DiffusionWrapper({"target": "torch.nn.Identity"}, "crossattn")
            self.model.diffusion_model = unet

    return OfficialLatentDiffusion()


def _guided_ddim(official: dict[str, Any], diffusion: Any, inputs: dict[str, np.ndarray], style: Any,
                 scales: Any) -> tuple[np.ndarray, np.ndarray]:
    """(visited timesteps, latents after each step) of the official DDIMStyleSampler, its noise `latent_noise`."""
    import torch

    class Sampler(official["ddim"].DDIMStyleSampler):
        def register_buffer(self, name: str, attr: Any) -> None:  # the official one moves every tensor to "cuda"
            setattr(self, name, attr)

    noise = iter(torch.from_numpy(latent_noise(DDIM["steps"])))
    official["ddim"].noise_like = lambda shape, device, repeat=False: next(noise)
    text = torch.from_numpy(inputs["text"]).float()
    empty = torch.from_numpy(inputs["empty_text"]).float().repeat(BATCH, 1, 1)
    sampler = Sampler(diffusion)
    _, steps = sampler.sample(
        S=DDIM["steps"], batch_size=BATCH, shape=(4, FRAMES, SIZE, SIZE), conditioning=text, verbose=False,
        x_T=torch.from_numpy(inputs["x_T"]).float(), eta=DDIM["eta"], log_every_t=1,
        unconditional_guidance_scale=DDIM["text_scale"], unconditional_guidance_scale_style=DDIM["style_scale"],
        unconditional_conditioning=empty, temporal_length=FRAMES, append_to_context=style, scale_scalar=scales)
    return np.flip(sampler.ddim_timesteps).copy(), np.stack([x.numpy() for x in steps["x_inter"][1:]])


def main(argv: list[str] | None = None) -> None:
    """Build, run and store; prints the size and the scale of each output."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, help="work tree of github.com/GongyeLiu/StyleCrafter")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    import torch

    torch.set_grad_enabled(False)
    official = _official(args.official)
    built = _modules(official, parity_model())
    diffusion = official_latent_diffusion(official, built["unet"])
    rng = np.random.default_rng(0)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float16)  # noqa: E731
    inputs = dict(image_x=normal(BATCH, 4, 1, SIZE, SIZE),
                  t=np.array(TIMESTEPS), text=normal(BATCH, 77, ADAPTER_FIELDS["context_dim"]),
                  empty_text=normal(1, 77, ADAPTER_FIELDS["context_dim"]),
                  style_image_tokens=normal(BATCH, STYLE_IMAGE_TOKENS, ADAPTER_FIELDS["image_dim"]),
                  x_T=normal(BATCH, 4, FRAMES, SIZE, SIZE))
    tensor = lambda name: torch.from_numpy(inputs[name]).float()  # noqa: E731
    text, t = tensor("text"), torch.from_numpy(inputs["t"])
    style = built["adapter"](tensor("style_image_tokens"))
    scales = built["adapter"].scale_predictor(torch.cat([style, text], dim=1))
    outputs = {"adapter/style": style, "adapter/scales": scales}
    visited, latents = _guided_ddim(official, diffusion, inputs, style, scales)
    first = torch.full((BATCH,), int(visited[0]))  # the video U-Net runs on what the first DDIM step sees
    for mode, unet, x, t in (("video", built["unet"], tensor("x_T"), first),
                             ("image", built["image_unet"], tensor("image_x"), t)):
        outputs[f"{mode}/out_style"] = unet(x, t, context=text, append_to_context=style, scale_scalar=scales)
        outputs[f"{mode}/out_text"] = unet(x, t, context=text)
    io_arrays = {**inputs, **{k: v.numpy() for k, v in outputs.items()}, "ddim/timesteps": visited,
                 "ddim/noise": latent_noise(DDIM["steps"]), "ddim/latents": latents,
                 "temporal_modules": np.array(sorted(name for name, m in built["unet"].named_modules()
                                                     if isinstance(m, official["TemporalTransformer"])))}
    weights = {**{"videocrafter/" + UNET_PREFIX + k: v for k, v in built["unet_state"].items()},
               **{"videocrafter/" + k: v.numpy() for k, v in diffusion.state_dict().items()
                  if not k.startswith("model.")},
               **{"adapter/" + k: v for k, v in built["adapter_state"].items()}}
    os.makedirs(args.out, exist_ok=True)
    np.savez_compressed(os.path.join(args.out, "weights.npz"), **weights)
    np.savez_compressed(os.path.join(args.out, "io.npz"), **io_arrays)
    for key, value in io_arrays.items():
        if "/" in key and not key.endswith(("timesteps", "noise")):
            print(f"{key}: {value.shape} {value.dtype}, max |value| {np.abs(value).max():.3f}")
    print(f"torch {torch.__version__}, numpy {np.__version__}; {sum(v.size for v in weights.values())} weights; "
          f"files in {args.out}")


if __name__ == "__main__":
    main()
