"""Split the trained tree into the stored components and merge them back.

Components: `unet` (the base U-Net, no style branches), `adapter` ({'adapter': StyleAdapter params,
'processors': the U-Net's `.../attn2/processor/` leaves, nested as in the U-Net}; style models only),
`projector` (the image-to-video models' Resampler), `vae`, `text_encoder`, `image_encoder`, and
`schedule` (an official checkpoint's DDPM buffers as stored, for `diffusion.schedule.process_from_buffers`).
"""

from __future__ import annotations

from typing import Any

from flax import traverse_util

PROCESSOR = "processor"


def split_processors(unet: dict) -> tuple[dict, dict]:
    """(base U-Net tree without style branches, tree of the style-branch leaves only)."""
    flat = traverse_util.flatten_dict(unet)
    base = {k: v for k, v in flat.items() if PROCESSOR not in k}
    processors = {k: v for k, v in flat.items() if PROCESSOR in k}
    return traverse_util.unflatten_dict(base), traverse_util.unflatten_dict(processors)


def merge_processors(base: dict, processors: dict) -> dict:
    """The U-Net tree with the style-branch leaves put back in place."""
    return traverse_util.unflatten_dict({**traverse_util.flatten_dict(base),
                                         **traverse_util.flatten_dict(processors)})


def trained_tree_to_components(params: dict[str, Any]) -> dict[str, dict]:
    """{'unet', 'adapter' | 'projector'} trained tree -> {'unet': base, 'adapter': {'adapter', 'processors'}}
    (style models) or {'unet', 'projector'} (image-to-video models)."""
    if "adapter" not in params:
        return dict(params)
    base, processors = split_processors(params["unet"])
    return {"unet": base, "adapter": {"adapter": params["adapter"], "processors": processors},
            **{name: tree for name, tree in params.items() if name not in ("unet", "adapter")}}


def components_to_trained_tree(components: dict[str, dict]) -> dict[str, Any]:
    """The inverse of `trained_tree_to_components`."""
    if "adapter" not in components:
        return dict(components)
    adapter = components["adapter"]
    return {"unet": merge_processors(components["unet"], adapter["processors"]), "adapter": adapter["adapter"],
            **{name: tree for name, tree in components.items() if name not in ("unet", "adapter")}}
