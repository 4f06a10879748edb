"""The official StyleCrafter PyTorch sampler at our model config's shapes, random weights, for side-by-side timing.

The official code is a checkout of github.com/GongyeLiu/StyleCrafter in an untracked folder (never
committed; BENCHMARKS.md, "Accelerator run", says how to get it). Neither Lightning nor open_clip is
needed: the U-Net (`lvdm.modules.networks.openaimodel3d.UNetModel`), the style adapter
(`StyleAdapterDualAttnAS`, its processors installed in the U-Net) and the VAE decoder
(`ae_modules.Decoder` after the 1x1 post-quant conv) are built from the inference yaml's values, which
are our config's fields, and the official `DDIMStyleSampler` runs over `OfficialDiffusion`, a stand-in
for LatentDiffusion holding what that sampler reads (the schedule buffers, `device`, `use_scale`,
`apply_model`). The CLIP towers are not run: the text contexts and style image tokens are random tensors
of their output shapes. Without xformers (not on the GPU machine) the official attention is its einsum
path (`OfficialVideoModel.attention` says which ran); `use_checkpoint` is off (it only matters for training).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import time
from typing import Any

import ml_collections
import numpy as np

from stylecrafter_jax.diffusion.schedule import DiffusionSchedule
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.build import build_unet

SCALE_FACTOR = 0.18215  # the VAE latent scale of the inference yaml


def import_official(repo: str) -> dict[str, Any]:
    """The official classes this benchmark builds, imported from the checkout at `repo`."""
    if not os.path.isfile(os.path.join(repo, "lvdm", "models", "samplers", "ddim.py")):
        raise ConfigError(f"--official {repo!r}: expected a checkout of github.com/GongyeLiu/StyleCrafter "
                          "(lvdm/models/samplers/ddim.py missing)")
    sys.path.insert(0, os.path.abspath(repo))
    try:
        from lvdm.models.samplers.ddim import DDIMStyleSampler
        from lvdm.modules.attention import XFORMERS_IS_AVAILBLE
        from lvdm.modules.encoders.adapter import StyleAdapterDualAttnAS
        from lvdm.modules.networks.ae_modules import Decoder
        from lvdm.modules.networks.openaimodel3d import UNetModel
    finally:
        sys.path.remove(os.path.abspath(repo))
    return dict(DDIMStyleSampler=DDIMStyleSampler, StyleAdapterDualAttnAS=StyleAdapterDualAttnAS, Decoder=Decoder,
                UNetModel=UNetModel, attention="xformers" if XFORMERS_IS_AVAILBLE else "einsum")


def official_style_unet(classes: dict[str, Any], model: ml_collections.ConfigDict) -> tuple[Any, Any]:
    """(the official UNetModel with the adapter's processors installed, the StyleAdapterDualAttnAS) at the sizes
    of `model`, in torch's own initialisation; `classes` holds those two classes (see `import_official`)."""
    u, a = model.unet, model.adapter
    unet = classes["UNetModel"](
        in_channels=u.in_channels, model_channels=u.model_channels, out_channels=u.out_channels,
        num_res_blocks=u.num_res_blocks, attention_resolutions=list(u.attention_resolutions),
        channel_mult=list(u.channel_mult), num_head_channels=u.num_head_channels, transformer_depth=1,
        context_dim=u.context_dim, use_linear=True, use_checkpoint=False, temporal_conv=False,
        temporal_attention=True, temporal_selfatt_only=True, use_relative_position=True,
        use_causal_attention=False, temporal_length=u.temporal_max_distance, addition_attention=u.addition_attention)
    adapter = classes["StyleAdapterDualAttnAS"](
        image_context_config={"target": "lvdm.modules.encoders.adapter.StyleTransformer",
                              "params": dict(in_dim=a.image_dim, out_dim=a.context_dim, num_heads=a.style_heads,
                                             num_tokens=a.style_tokens, n_layers=a.style_layers)},
        scale_predictor_config={"target": "lvdm.modules.encoders.adapter.ScaleEncoder",
                                "params": dict(in_dim=a.context_dim, out_dim=1, num_heads=a.scale_heads,
                                               num_tokens=build_unet(model).num_cross_attention_layers,
                                               n_layers=a.scale_layers)},
        scale=1.0, use_norm=True)
    adapter.create_cross_attention_adapter(unet)
    return unet, adapter


def randomize_(module: Any, seed: int) -> Any:
    """Our random_params rule in place: matrices ~ N(0, 1/fan_in), norm scales 1, biases 0, others N(0, 0.02²)."""
    import torch

    generator = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 1.0 / math.sqrt(math.prod(p.shape[1:])), generator=generator)
            elif name.endswith("weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=generator)
    return module.eval()


class OfficialDiffusion:
    """What the official DDIM samplers read of a LatentDiffusion: schedule buffers, device and `apply_model`."""

    def __init__(self, unet: Any, schedule: DiffusionSchedule, device: Any):
        import torch

        def buffer(values: np.ndarray) -> Any:
            return torch.tensor(np.asarray(values, np.float32), device=device)

        self.unet, self.device = unet, device
        self.betas = buffer(schedule.betas)
        self.alphas_cumprod = buffer(schedule.alphas_cumprod)
        self.alphas_cumprod_prev = buffer(schedule.alphas_cumprod_prev)
        self.num_timesteps = int(schedule.num_timesteps)
        self.use_scale = False

    def apply_model(self, x: Any, t: Any, cond: Any, **kwargs: Any) -> Any:
        """LatentDiffusion.apply_model for a cross-attention model: the U-Net on the context `cond`."""
        return self.unet(x, t, context=cond, **kwargs)


class OfficialVideoModel:
    """The official U-Net + adapter + VAE decoder of `model` on `device` (random), and its timed sampler."""

    def __init__(self, repo: str, model: ml_collections.ConfigDict, schedule: DiffusionSchedule, device: str,
                 seed: int = 0):
        import torch

        classes = import_official(repo)
        self.model, self.device = model, torch.device(device)
        self.attention = classes["attention"]  # the official attention path: "xformers" where installed, else "einsum"
        v = model.vae
        with torch.device(self.device), contextlib.redirect_stdout(io.StringIO()):  # the adapter prints each layer
            unet, adapter = official_style_unet(classes, model)
            decoder = classes["Decoder"](ch=v.ch, out_ch=v.out_ch, ch_mult=list(v.ch_mult),
                                         num_res_blocks=v.num_res_blocks, attn_resolutions=[], dropout=0.0,
                                         in_channels=v.in_channels, resolution=256, z_channels=v.z_channels)
            post_quant = torch.nn.Conv2d(v.embed_dim, v.z_channels, 1)
        self.unet, self.adapter = randomize_(unet, seed), randomize_(adapter, seed + 1)
        self.decoder, self.post_quant = randomize_(decoder, seed + 2), randomize_(post_quant, seed + 3)
        self.diffusion = OfficialDiffusion(self.unet, schedule, self.device)

        device_of = self.device

        class Sampler(classes["DDIMStyleSampler"]):
            """The official sampler; its register_buffer moves every tensor to "cuda", here to the model's device."""

            def register_buffer(self, name: str, attr: Any) -> None:
                setattr(self, name, attr.to(device_of) if isinstance(attr, torch.Tensor) else attr)

        self.sampler = Sampler(self.diffusion)

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def video(self, *, batch: int, frames: int, height: int, width: int, steps: int, text_scale: float,
              style_scale: float, eta: float, fp16: bool, seed: int = 0) -> dict[str, float]:
        """Seconds of the adapter conditioning, the official DDIM loop and the VAE decode of `batch` videos.

        `height` and `width` are latent sizes. With `fp16` everything runs under fp16 autocast. Peak
        device memory (bytes) is reported on CUDA, None elsewhere; `finite` says whether every decoded value is.
        """
        import torch

        torch.manual_seed(seed)
        u, a = self.model.unet, self.model.adapter
        tokens = (self.model.image_encoder.image_size // self.model.image_encoder.patch_size) ** 2 + 1
        text = torch.randn(batch, u.text_length, u.context_dim, device=self.device)
        empty = torch.randn(batch, u.text_length, u.context_dim, device=self.device)
        image_tokens = torch.randn(batch, tokens, a.image_dim, device=self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        autocast = torch.autocast(self.device.type, dtype=torch.float16, enabled=fp16)
        marks = []
        with torch.no_grad(), autocast:
            self._sync()
            marks.append(time.perf_counter())
            style = self.adapter(image_tokens)
            scales = self.adapter.scale_predictor(torch.cat([style, text], dim=1))
            self._sync()
            marks.append(time.perf_counter())
            latents, _ = self.sampler.sample(S=steps, conditioning=text, batch_size=batch,
                                             shape=(u.in_channels, frames, height, width), verbose=False,
                                             unconditional_guidance_scale=text_scale,
                                             unconditional_guidance_scale_style=style_scale,
                                             unconditional_conditioning=empty, eta=eta, temporal_length=frames,
                                             append_to_context=style, scale_scalar=scales)
            self._sync()
            marks.append(time.perf_counter())
            z = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, u.in_channels, height, width)
            pixels = self.decoder(self.post_quant(z / SCALE_FACTOR))
            self._sync()
            marks.append(time.perf_counter())
        condition_s, ddim_s, decode_s = np.diff(marks)
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        return dict(condition_s=float(condition_s), ddim_s=float(ddim_s), decode_s=float(decode_s), peak_bytes=peak,
                    finite=bool(torch.isfinite(pixels.float()).all()))

    def release(self) -> None:
        """Free the device memory torch caches, for the JAX runs after this one."""
        import torch

        del self.unet, self.adapter, self.decoder, self.post_quant, self.diffusion, self.sampler
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
