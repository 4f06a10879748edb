"""Training stages as ordered (regex over the `/`-joined parameter path, label) rules; first match wins.

Paths are rooted at the trained tree {'unet': ..., 'adapter': ...} ({'unet': ..., 'projector': ...} for the
image-to-video stages). Labels: "train" or "frozen". StyleCrafter's stages train the style adapter
("stage1") and the temporal transformers ("stage2"); "full" trains the base U-Net (the toy base model).
`I2V_STAGE_INPUTS` says what each image-to-video stage's batch carries (image mode, the VDG latent,
interpolation) and which variants it fits.

Choices where the image-to-video reference is silent (the paper's per-stage trainable sets were not
retrievable):
- "temporal layers" are the 17 temporal transformers (with init_attn) and the 22 TemporalConvBlocks
  (`temopral_conv`, convolutions over frames); every other U-Net parameter is a "spatial layer":
  ResBlocks, spatial transformers with their image K/V (and DC256's learned α), conv_in (both VDG
  halves), Down/Upsample, the output head, the time embedding and the fps embedding (it enters only
  through the ResBlocks' emb_layers and is zero-initialised, so it must train where temporal layers are
  frozen);
- dc_projector trains P and the image K/V only; α stays at its init (λ = 1, as the maintainer says of
  the SD stage);
- dc_adapt and dc_joint train the same set; they differ in the batch (no VDG latent: the U-Net's VDG
  channels get zeros, their conv_in kernel half no gradient);
- dc_interp is the released interpolation config (`config_interp.yaml`): the whole U-Net and P.
"""

from __future__ import annotations

from typing import NamedTuple

from stylecrafter_jax.errors import ConfigError

# The 17 temporal transformers: init_attn and child 2 of every U-Net block that has attention.
TEMPORAL_TRANSFORMERS = r"(init_attn_0|(input_blocks_\d+|middle_block|output_blocks_\d+)/2)/"
# The temporal layers: those and the 22 TemporalConvBlocks inside the ResBlocks.
TEMPORAL_LAYERS = r"^unet/(" + TEMPORAL_TRANSFORMERS + r"|.*/temopral_conv/)"
PROJECTOR = r"^projector/"
IMAGE_KV = r"^unet/.*/attn2/(to_k_ip|to_v_ip)/"

_PROJECTOR_AND_IMAGE_KV = ((PROJECTOR, "train"), (IMAGE_KV, "train"), (r".*", "frozen"))
_SPATIAL = ((PROJECTOR, "train"), (TEMPORAL_LAYERS, "frozen"), (r"^unet/", "train"), (r".*", "frozen"))
_WHOLE = ((PROJECTOR, "train"), (r"^unet/", "train"), (r".*", "frozen"))

I2V_STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    # (1) P and the image K/V on the text-to-image model (the U-Net with temporal layers skipped).
    "dc_projector": _PROJECTOR_AND_IMAGE_KV,
    # (2) P adapted to the video model with the spatial layers; temporal layers frozen.
    "dc_adapt": _SPATIAL,
    # (3) P and the spatial layers with the visual detail guidance (VDG) input; temporal layers frozen.
    "dc_joint": _SPATIAL,
    # The released training config (configs/training_{512,1024}_v1.0): the whole U-Net and P.
    "dc_finetune": _WHOLE,
    # The released interpolation training config: the whole U-Net and P, first and last frame given.
    "dc_interp": _WHOLE,
    # VideoCrafter1 I2V (no training code released): its projector and the image K/V.
    "vc_i2v": _PROJECTOR_AND_IMAGE_KV,
}

STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    # Stage 1: the style adapter (StyleTransformer, ScaleEncoder, the style K/V and LayerNorms).
    "stage1": (
        (r"^adapter/", "train"),
        (r"^unet/.*/attn2/processor/", "train"),
        (r".*", "frozen"),
    ),
    # Stage 2: the 17 temporal transformers.
    "stage2": (
        (r"^unet/" + TEMPORAL_TRANSFORMERS, "train"),
        (r".*", "frozen"),
    ),
    # The base text-to-video U-Net without the style branches (the toy base model).
    "full": (
        (r"^unet/.*/processor/", "frozen"),
        (r"^unet/", "train"),
        (r".*", "frozen"),
    ),
    **I2V_STAGES,
}


def stage_rules(name: str) -> tuple[tuple[str, str], ...]:
    """The rules of a named stage."""
    if name not in STAGES:
        raise KeyError(f"stage {name!r}: expected one of {sorted(STAGES)}")
    return STAGES[name]


class StageInputs(NamedTuple):
    """What a stage's batch carries, and the variants whose models it trains."""

    image_mode: bool  # temporal layers skipped (the text-to-image model)
    vdg: bool  # the conditioning-frame latent joined to the U-Net input (else zeros where the U-Net takes one)
    interp: bool  # first and last frame latents, zeros between; CLIP sees frame 0
    variants: tuple[str, ...]


_DC = ("dynamicrafter_256", "dynamicrafter_512", "dynamicrafter_1024", "dynamicrafter_512_interp")
I2V_STAGE_INPUTS: dict[str, StageInputs] = {
    "dc_projector": StageInputs(image_mode=True, vdg=False, interp=False, variants=_DC),
    "dc_adapt": StageInputs(image_mode=False, vdg=False, interp=False, variants=_DC),
    "dc_joint": StageInputs(image_mode=False, vdg=True, interp=False, variants=_DC),
    "dc_finetune": StageInputs(image_mode=False, vdg=True, interp=False, variants=_DC),
    "dc_interp": StageInputs(image_mode=False, vdg=True, interp=True, variants=("dynamicrafter_512_interp",)),
    "vc_i2v": StageInputs(image_mode=False, vdg=False, interp=False, variants=("videocrafter_i2v",)),
}


def stages_for_variant(variant: str) -> tuple[str, ...]:
    """The image-to-video stages that train a model of the variant."""
    return tuple(name for name, inputs in I2V_STAGE_INPUTS.items() if variant in inputs.variants)


def stage_inputs(stage: str, variant: str) -> StageInputs:
    """The inputs of an image-to-video stage; ConfigError if the stage does not train the variant."""
    if stage not in I2V_STAGE_INPUTS:
        raise ConfigError(f"stage {stage!r}: expected one of the image-to-video stages {sorted(I2V_STAGE_INPUTS)}")
    inputs = I2V_STAGE_INPUTS[stage]
    if variant not in inputs.variants:
        need = "a variant with a last-frame input" if inputs.interp else "one of the variants"
        raise ConfigError(f"stage {stage!r} on model.variant {variant!r}: needs {need} {inputs.variants}")
    return inputs
