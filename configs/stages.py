"""Training stages as ordered (regex over the `/`-joined parameter path, label) rules; first match wins.

Paths are rooted at the trained tree {'unet': ..., 'adapter': ...} ({'unet': ..., 'projector': ...} for the
image-to-video stages). Labels: "train" or "frozen".
"""

from __future__ import annotations

from stylecrafter_jax.train.stages_i2v import I2V_STAGES, TEMPORAL_TRANSFORMERS

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
    # The image-to-video stages (DynamiCrafter's, VideoCrafter1 I2V's): stylecrafter_jax/train/stages_i2v.py.
    **I2V_STAGES,
}


def stage_rules(name: str) -> tuple[tuple[str, str], ...]:
    """The rules of a named stage."""
    if name not in STAGES:
        raise KeyError(f"stage {name!r}: expected one of {sorted(STAGES)}")
    return STAGES[name]
