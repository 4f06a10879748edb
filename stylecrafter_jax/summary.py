"""Print the model's components, their parameter counts, what the stage trains and the U-Net FLOPs.

Components: unet (base, without the style branches) with its temporal transformers, temporal convs and
image K/V, adapter (StyleTransformer, ScaleEncoder, style K/V) with its parts, the image-to-video
projector, and the frozen vae, text_encoder, image_encoder; a component the model lacks is not listed;
an image-to-video model also gets the trainable count of each of its stages (dc_*, vc_i2v).

python -m stylecrafter_jax.summary --config=configs/stage2.py [--json]
(also configs/videocrafter_i2v.py and configs/dynamicrafter.py:256|512|1024|512_interp)
Counts come from jax.eval_shape (nothing is materialised); FLOPs from XLA's cost analysis of one
U-Net forward (batch 1, with style tokens, image tokens and the VDG latent where the model has them)
at the config's latent shape.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

from stylecrafter_jax.cli import flag_main
from stylecrafter_jax.conditioning.frozen import build_encoders, init_encoder_params
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.models.build import build_unet, example_inputs, param_shapes, unet_branch_inputs
from stylecrafter_jax.train.stages import TEMPORAL_TRANSFORMERS, stage_rules, stages_for_variant
from stylecrafter_jax.train.state import count_by_label, label_params
from stylecrafter_jax.trees import path_string


COMPONENTS = {
    "unet": r"^unet/(?!.*/processor/)",
    "unet.temporal": r"^unet/" + TEMPORAL_TRANSFORMERS,
    "unet.temporal_conv": r"^unet/.*/temopral_conv/",
    "unet.image_kv": r"^unet/.*/attn2/(to_k_ip/|to_v_ip/|alpha$)",
    "adapter": r"^adapter/|^unet/.*/processor/",
    "adapter.style_transformer": r"^adapter/image_context_model/",
    "adapter.scale_encoder": r"^adapter/scale_predictor/",
    "adapter.style_kv": r"^unet/.*/processor/",
    "projector": r"^projector/",
}


def component_counts(shapes: dict) -> dict[str, int]:
    """Parameter count of each named component the trained tree has."""
    leaves = [(path_string(p), int(np.prod(v.shape))) for p, v in jax.tree_util.tree_leaves_with_path(shapes)]
    counts = {name: sum(n for path, n in leaves if re.search(pattern, path)) for name, pattern in COMPONENTS.items()}
    return {name: count for name, count in counts.items() if count}


def encoder_counts(model: ml_collections.ConfigDict) -> dict[str, int]:
    """Parameter counts of the frozen encoders (the VAE when the model uses one, CLIP text and vision)."""
    encoders = build_encoders(model)
    shapes = nn.unbox(jax.eval_shape(lambda key: init_encoder_params(encoders, key), jax.random.key(0)))
    return {name: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree)) for name, tree in shapes.items()}


def unet_forward_flops(model: ml_collections.ConfigDict, shapes: dict) -> float:
    """FLOPs of one U-Net forward (batch 1, every branch on) from XLA's cost analysis of the lowered HLO."""
    unet = build_unet(model)
    inputs = example_inputs(model)
    lowered = jax.jit(lambda p, x, t, c, branches: unet.apply({"params": p}, x, t, c, **branches)).lower(
        shapes["unet"], inputs["x"], inputs["timesteps"], inputs["context"], unet_branch_inputs(inputs))
    return float(lowered.cost_analysis()["flops"])


def stage_trainable_counts(shapes: dict, variant: str) -> dict[str, int]:
    """Trainable parameter count of each image-to-video stage that trains the variant."""
    return {stage: count_by_label(shapes, label_params(shapes, stage_rules(stage)))["train"]
            for stage in stages_for_variant(variant)}


def summarize(config: ml_collections.ConfigDict) -> dict:
    """The summary as a dict: components, trainable and frozen counts, U-Net forward FLOPs, and for an
    image-to-video model the trainable count of each of its stages."""
    shapes = nn.unbox(param_shapes(config.model))
    counts = count_by_label(shapes, label_params(shapes, stage_rules(config.stage)))
    encoders = encoder_counts(config.model)
    summary = {
        "components": {**component_counts(shapes), **encoders},
        "trainable": counts["train"],
        "frozen": counts["frozen"] + sum(encoders.values()),  # the frozen encoders included
        "unet_forward_flops": unet_forward_flops(config.model, shapes),
    }
    if "variant" in config.model:
        summary["stages"] = stage_trainable_counts(shapes, config.model.variant)
    return summary


def format_table(summary: dict, config: ml_collections.ConfigDict) -> str:
    """A human-readable table of the summary."""
    m = config.model
    rows = [f"model size {m.size}, stage {config.stage}, latent {m.frames}x{m.latent_height}x{m.latent_width}",
            f"{'component':<28}{'parameters':>16}"]
    rows += [f"{name:<28}{count:>16,}" for name, count in summary["components"].items()]
    rows += [f"{'trainable (' + config.stage + ')':<28}{summary['trainable']:>16,}",
             f"{'frozen':<28}{summary['frozen']:>16,}"]
    rows += [f"{'trainable (' + stage + ')':<28}{count:>16,}" for stage, count in summary.get("stages", {}).items()]
    rows += [f"{'U-Net forward FLOPs':<28}{summary['unet_forward_flops'] / 1e12:>13.3f} T"]
    return "\n".join(rows)


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """Register the command's flags on `flag_values` (config overrides are read from `argv`)."""
    config_flags.DEFINE_config_file("config", None, "Config file (get_config), e.g. configs/stage1.py:tiny",
                                    flag_values=flag_values, sys_argv=list(argv))
    flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.", flag_values=flag_values)


def run(fv: flags.FlagValues) -> dict:
    """Print the summary of the parsed flags' config; returns it."""
    if fv.config is None:
        raise ConfigError("--config is required, e.g. --config=configs/stage1.py")
    summary = summarize(fv.config)
    print(json.dumps(summary) if fv.json else format_table(summary, fv.config))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv (argv[0] is the program name; sys.argv when None), run, and return the exit status (2 on bad input)."""
    return flag_main(argv, __doc__, define_flags, run)


if __name__ == "__main__":
    sys.exit(main())
