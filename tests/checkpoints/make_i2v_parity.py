"""Writes tests/checkpoints/data/i2v_parity/ (weights.npz, io.npz) from the official DynamiCrafter and VideoCrafter
code: tiny official UNetModels and Resamplers with random weights, run on random inputs. Run by hand, never by
the suite (it needs torch and the two official work trees, which are never committed):

    .venv/bin/python -m tests.checkpoints.make_i2v_parity --dynamicrafter DC_TREE --videocrafter VC_TREE

Weights (tests/torch_references.py `randomize_`, seed 0 for the U-Net, 1 for each Resampler) are rounded to
float16 with 3 significant bits (tests/torch_references.py `coarse_half`) and inputs to float16 (numpy default_rng(0)) before the official
modules run, so the float16 copies stored are exactly what produced the float32 outputs. One random DynamiCrafter U-Net serves all three variants: stored
as DynamiCrafter 256 names it (`framestride_embed`, learned `alpha`s); DynamiCrafter 512 is that file without
the `alpha`s and with the key renamed back; VideoCrafter1 I2V is the 512 one with the first 4 input channels
of `input_blocks.0.0.weight` (`i2v_state_dict`). The test (test_i2v_parity.py) derives them the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

OUT = os.path.join(os.path.dirname(__file__), "data", "i2v_parity")
UNET_PREFIX = "model.diffusion_model."
PROJECTOR_PREFIX = "image_proj_model."
FRAMES, SIZE, BATCH, TEXT, CONTEXT_DIM, CLIP_WIDTH, CLIP_TOKENS = 4, 8, 2, 77, 32, 64, 257
DC_TOKENS_PER_FRAME, VC_TOKENS = 16, 4
UNET_KWARGS = dict(model_channels=32, out_channels=4, num_res_blocks=1, attention_resolutions=[1], channel_mult=[1, 2],
                   num_head_channels=8, transformer_depth=1, context_dim=CONTEXT_DIM, use_linear=True,
                   use_checkpoint=False, temporal_conv=True, temporal_attention=True, temporal_selfatt_only=True,
                   use_relative_position=False, use_causal_attention=False, addition_attention=True)
"""The official UNetModel arguments both variants share (`i2v_parity_models` in the test mirrors them)."""
PROJECTOR_KWARGS = dict(dim=32, depth=1, dim_head=16, heads=2, embedding_dim=CLIP_WIDTH, output_dim=CONTEXT_DIM,
                        ff_mult=4)
DEFAULT_FS = {"dynamicrafter_256": 3, "dynamicrafter_512": 24}
FS = {"dynamicrafter_256": [3, 5], "dynamicrafter_512": [10, 24], "videocrafter_i2v": [8, 16]}
TIMESTEPS = [999, 21]


def i2v_state_dict(dc256: dict, variant: str) -> dict:
    """The official U-Net state dict of `variant` derived from the stored DynamiCrafter 256 one."""
    if variant == "dynamicrafter_256":
        return dict(dc256)
    renamed = {k.replace(UNET_PREFIX + "framestride_embed.", UNET_PREFIX + "fps_embedding."): v
               for k, v in dc256.items() if not k.endswith(".alpha")}
    if variant == "videocrafter_i2v":
        conv_in = UNET_PREFIX + "input_blocks.0.0.weight"
        renamed[conv_in] = renamed[conv_in][:, :4]
    return renamed


def _official(tree: str):
    """The official modules of one work tree (its `utils.utils` stubbed: only configs instantiate from it)."""
    for name in [n for n in sys.modules if n == "lvdm" or n.startswith(("lvdm.", "utils"))]:
        del sys.modules[name]
    stub = types.ModuleType("utils.utils")
    stub.instantiate_from_config = None
    sys.modules["utils"], sys.modules["utils.utils"] = types.ModuleType("utils"), stub
    sys.path.insert(0, tree)
    try:
        from lvdm.modules.networks.openaimodel3d import UNetModel
        try:
            from lvdm.modules.encoders.resampler import Resampler
        except ImportError:
            from lvdm.modules.encoders.ip_resampler import Resampler
    finally:
        sys.path.remove(tree)
    return UNetModel, Resampler


def _random_state_dict(module: torch.nn.Module, seed: int, prefix: str) -> dict[str, np.ndarray]:
    """`randomize_(module, seed)`'s values made `coarse_half`, loaded back into the module and returned with `prefix`.

    The learned image-attention weights `alpha` (randomize_ draws N(0, 0.1²) for them) are scaled to N(0, 1), so
    tanh(α) does not shrink the image branch a hundredfold.
    """
    from tests.torch_references import coarse_half, numpy_state_dict, randomize_

    state = {prefix + k: coarse_half(v * 10.0 if k.endswith(".alpha") else v)
             for k, v in numpy_state_dict(randomize_(module, seed)).items()}
    _load(module, state, prefix)
    return state


def _load(module: torch.nn.Module, state_dict: dict, prefix: str) -> torch.nn.Module:
    """Strict load; `framestride_embed` (the DC256 file's name) is the code's `fps_embedding`, as its loader renames."""
    import torch

    named = {k[len(prefix):].replace("framestride_embed.", "fps_embedding."): torch.from_numpy(np.asarray(v, np.float32))
             for k, v in state_dict.items()}
    module.load_state_dict(named, strict=True)
    return module.eval()


def main(argv: list[str] | None = None) -> None:
    """Build, run and store; prints the size and the scale of each output."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dynamicrafter", required=True, help="work tree of github.com/Doubiiu/DynamiCrafter")
    parser.add_argument("--videocrafter", required=True, help="work tree of github.com/AILab-CVC/VideoCrafter")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    import torch

    torch.set_grad_enabled(False)
    rng = np.random.default_rng(0)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float16)  # noqa: E731
    weights, io = {}, {}

    DCUNet, DCResampler = _official(args.dynamicrafter)
    dc256 = DCUNet(in_channels=8, temporal_length=FRAMES, image_cross_attention=True, fs_condition=True,
                   image_cross_attention_scale_learnable=True, default_fs=DEFAULT_FS["dynamicrafter_256"],
                   **UNET_KWARGS)
    state = _random_state_dict(dc256, 0, UNET_PREFIX)
    state = {k.replace(UNET_PREFIX + "fps_embedding.", UNET_PREFIX + "framestride_embed."): v for k, v in state.items()}
    weights.update({"unet/" + k: v for k, v in state.items()})
    modules = {"dynamicrafter_256": dc256,
               "dynamicrafter_512": DCUNet(in_channels=8, temporal_length=FRAMES, image_cross_attention=True,
                                           fs_condition=True, default_fs=DEFAULT_FS["dynamicrafter_512"],
                                           **UNET_KWARGS)}
    dc_projector = DCResampler(num_queries=DC_TOKENS_PER_FRAME, video_length=FRAMES, **PROJECTOR_KWARGS)

    VCUNet, VCResampler = _official(args.videocrafter)
    modules["videocrafter_i2v"] = VCUNet(in_channels=4, use_image_attention=True, fps_cond=True, **UNET_KWARGS)
    vc_projector = VCResampler(num_queries=VC_TOKENS, **PROJECTOR_KWARGS)

    for variant, module in modules.items():
        _load(module, i2v_state_dict(state, variant), UNET_PREFIX)
        dc = variant != "videocrafter_i2v"
        image_tokens = DC_TOKENS_PER_FRAME * FRAMES if dc else VC_TOKENS
        inputs = {"x": normal(BATCH, 4, FRAMES, SIZE, SIZE), "t": np.array(TIMESTEPS),
                  "fs": np.array(FS[variant]), "context": normal(BATCH, TEXT + image_tokens, CONTEXT_DIM)}
        if dc:
            inputs["cond"] = normal(BATCH, 4, FRAMES, SIZE, SIZE)
        x = torch.from_numpy(np.concatenate([inputs["x"], inputs["cond"]], 1) if dc else inputs["x"]).float()
        call = dict(x=x, timesteps=torch.from_numpy(inputs["t"]), context=torch.from_numpy(inputs["context"]).float())
        fs = torch.from_numpy(inputs["fs"])
        io.update({f"{variant}/{k}": v for k, v in inputs.items()})
        io[f"{variant}/out_fs"] = module(**call, **({"fs": fs} if dc else {"fps": fs})).numpy()
        io[f"{variant}/out_default"] = module(**call).numpy()

    for name, projector in (("dynamicrafter", dc_projector), ("videocrafter_i2v", vc_projector)):
        params = _random_state_dict(projector, 1, PROJECTOR_PREFIX)
        weights.update({f"projector_{name}/{k}": v for k, v in params.items()})
        tokens = normal(BATCH, CLIP_TOKENS, CLIP_WIDTH)
        io[f"projector_{name}/tokens"] = tokens
        io[f"projector_{name}/out"] = projector(torch.from_numpy(tokens).float()).numpy()

    os.makedirs(args.out, exist_ok=True)
    np.savez_compressed(os.path.join(args.out, "weights.npz"), **weights)
    np.savez_compressed(os.path.join(args.out, "io.npz"), **io)
    for key, value in io.items():
        if "/out" in key:
            print(f"{key}: {value.shape} {value.dtype}, max |out| {np.abs(value).max():.3f}")
    print(f"torch {torch.__version__}; {sum(v.size for v in weights.values())} weights; files in {args.out}")


if __name__ == "__main__":
    main()
