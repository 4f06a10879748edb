"""Synthetic official files (random values, the official key names, nesting and extra entries) for any
model config: the converter's tests, its benchmark and dry runs without the real weights.

`model.ckpt` gets the U-Net, VAE and text tower under their prefixes, the DDPM schedule buffers and the
`attn2.processor.*` aliases a merged StyleCrafter state dict has; `temporal_v1_1.pth` is nested by module
path and holds temporal weights that differ from model.ckpt's; `open_clip_pytorch_model.bin` holds
both towers and `logit_scale`. An image-to-video `model.ckpt` (VideoCrafter1 I2V, DynamiCrafter) holds
every component, the embedder's unused text leftovers, the config's schedule buffers (and `scale_arr`)
and, for DynamiCrafter 256, the frame-stride embedding under its official name `framestride_embed`.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import ml_collections
import numpy as np
from flax import traverse_util

from stylecrafter_jax.checkpoints import clip_import, official_import, vae_import
from stylecrafter_jax.checkpoints.conversion import (COMPONENTS, ENCODERS, SCHEDULE,
                                                     SOURCES, OfficialFiles, abstract_components, model_sources)
from stylecrafter_jax.checkpoints.official_keys import IMAGE_EMBEDDER_PREFIX, IMAGE_EMBEDDER_UNUSED, module_path_to_torch
from stylecrafter_jax.checkpoints.torch_files import PICKLE_SUFFIXES, write_state_dict
from stylecrafter_jax.diffusion.schedule import make_schedule, process_from_config

ROUNDING = {"float32": np.float32, "float16": np.float16}


def random_params(abstract: Any, seed: int, dtype: str = "float32") -> Any:
    """Float32 values for an abstract tree: kernels ~ N(0, 1/fan_in), norm scales ~ 1 + N(0, 0.01), rest
    ~ N(0, 0.01), rounded through `dtype` (float32 or float16) so a file of that dtype holds them exactly."""
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in traverse_util.flatten_dict(abstract, sep="/").items():
        noise = rng.standard_normal(leaf.shape, dtype=np.float32)
        if path.endswith("kernel"):
            noise /= np.float32(np.sqrt(max(1, int(np.prod(leaf.shape[:-1])))))
        else:
            noise = np.float32(path.endswith("scale")) + np.float32(0.1) * noise
        flat[path] = noise.astype(ROUNDING[dtype]).astype(np.float32)
    return traverse_util.unflatten_dict(flat, sep="/")


def official_state_dicts(components: dict[str, Any], temporal_unet: Any | None = None) -> dict[str, dict]:
    """{source: state dict} in the official layouts for the given components (`temporal_unet`: the U-Net
    whose temporal layers go into the temporal file)."""
    files: dict[str, dict] = {}
    if {"unet", "vae", "text_encoder"} & set(components):
        base: dict[str, Any] = dict(make_schedule()._asdict())
        if "unet" in components:
            base.update(official_import.unet_to_official(components["unet"]))
        if "adapter" in components and "unet" in components:
            base.update(_processor_aliases(components["adapter"]))
        if "vae" in components:
            base.update(vae_import.vae_params_to_official(components["vae"]))
        if "text_encoder" in components:
            base.update(clip_import.text_params_to_open_clip(components["text_encoder"]))
        files["videocrafter"] = base
    if "adapter" in components:
        files["adapter"] = official_import.adapter_to_official(components["adapter"])
    if temporal_unet is not None:
        files["temporal"] = official_import.temporal_to_official(temporal_unet)
    if "image_encoder" in components:
        files["open_clip"] = {**clip_import.vision_params_to_open_clip(components["image_encoder"]),
                              **clip_import.text_params_to_open_clip(components.get("text_encoder")
                                                                     or {}, prefix="")}
    return files


def _processor_aliases(adapter: Any) -> dict[str, np.ndarray]:
    """The `model.diffusion_model.<attn2 path>.processor.*` copies of the adapter's `kv_attn_layers.*`."""
    owners = {path.split("/processor/")[0] for path in traverse_util.flatten_dict(adapter["processors"], sep="/")}
    modules = {module_path_to_torch(p).replace(".", "_"): module_path_to_torch(p)
               for p in owners}
    aliases = {}
    for key, value in official_import.adapter_to_official(adapter).items():
        if key.startswith("kv_attn_layers."):
            owner, inner = key.removeprefix("kv_attn_layers.").split("_processor.")
            aliases[f"{official_import.UNET_PREFIX}{modules[owner]}.processor.{inner}"] = value
    return aliases


def write_official_files(directory: str, model: ml_collections.ConfigDict,
                         encoders: ml_collections.ConfigDict | None = None, *, seed: int = 0,
                         names: Sequence[str] | None = None, temporal: bool = True,
                         dtype: str = "float32", suffix: str = ".pth") -> tuple[OfficialFiles, dict[str, Any]]:
    """Write `model.ckpt`, `adapter_v1<suffix>`, `temporal_v1_1<suffix>`, `open_clip_pytorch_model<suffix>`
    (as far as `names` needs them) into `directory`.

    Returns the files and the components a correct import must give (the U-Net with the temporal
    file's weights).
    """
    names = [n for n in COMPONENTS if n in (names or SOURCES) and n != SCHEDULE]
    abstract = abstract_components(model, encoders if set(names) & set(ENCODERS) else None, names)
    components = {name: random_params(abstract[name], seed + i, dtype) for i, name in enumerate(names)}
    temporal_unet = None
    if temporal and "unet" in components:
        temporal_unet = random_params(abstract["unet"], seed + 100, dtype)
    state_dicts = official_state_dicts(components, temporal_unet)
    if temporal_unet is not None:
        prefixes = tuple(f"{p}." for p in official_import.temporal_module_paths(abstract["unet"]))
        flat = traverse_util.flatten_dict(components["unet"], sep="/")
        replaced = traverse_util.flatten_dict(temporal_unet, sep="/")
        components["unet"] = traverse_util.unflatten_dict(
            {path: replaced[path] if module_path_to_torch(path).startswith(prefixes) else leaf
             for path, leaf in flat.items()}, sep="/")
    os.makedirs(directory, exist_ok=True)
    paths = {"videocrafter": os.path.join(directory, "model.ckpt"),
             "adapter": os.path.join(directory, f"adapter_v1{suffix}"),
             "temporal": os.path.join(directory, f"temporal_v1_1{suffix}"),
             "open_clip": os.path.join(directory, "open_clip_pytorch_model"
                                       + (".bin" if suffix in PICKLE_SUFFIXES else suffix))}
    for source, state_dict in state_dicts.items():
        wrapped = {"state_dict": state_dict, "epoch": 0} if source == "videocrafter" else state_dict
        write_state_dict(paths[source], wrapped, dtype=dtype)
    return OfficialFiles(**{source: paths[source] for source in state_dicts}), components


def image_to_video_state_dict(model: ml_collections.ConfigDict, components: dict[str, Any]) -> dict[str, Any]:
    """The official state dict of an image-to-video model's components, with the config's schedule buffers."""
    process = process_from_config(model)
    state_dict: dict[str, Any] = dict(process.schedule._asdict())
    if process.scale_arr is not None:
        state_dict["scale_arr"] = process.scale_arr
    unet = official_import.unet_to_official(components["unet"])
    if model.unet.get("image_scale_learnable", False):  # DynamiCrafter 256: its `framestride_embed` name
        unet = official_import.rename_prefixes(unet, official_import.FRAMESTRIDE_RENAME)
    leftovers = clip_import.text_params_to_open_clip(components["text_encoder"], prefix=IMAGE_EMBEDDER_PREFIX)
    state_dict.update({**unet, **official_import.projector_to_official(components["projector"]),
                       **official_import.image_embedder_to_official(components["image_encoder"]),
                       **{key: leftovers[key] for key in IMAGE_EMBEDDER_UNUSED},
                       **clip_import.text_params_to_open_clip(components["text_encoder"]),
                       **vae_import.vae_params_to_official(components["vae"])})
    return state_dict


def write_image_to_video_file(directory: str, model: ml_collections.ConfigDict, *, seed: int = 0,
                              dtype: str = "float32", suffix: str = ".ckpt") -> tuple[OfficialFiles, dict[str, Any]]:
    """Write the image-to-video `model<suffix>` of the config's variant into `directory` (as `{"state_dict": ...}`
    in pickles); returns the files and the components a correct import must give."""
    abstract = abstract_components(model)
    components = {name: random_params(abstract[name], seed + i, dtype) for i, name in enumerate(abstract)}
    state_dict = image_to_video_state_dict(model, components)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"model{suffix}")
    write_state_dict(path, {"state_dict": state_dict, "epoch": 0} if suffix in PICKLE_SUFFIXES else state_dict,
                     dtype=dtype)
    return OfficialFiles(**{model_sources(model)["unet"]: path}), components
