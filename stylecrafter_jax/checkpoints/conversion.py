"""Convert the official PyTorch files into a converted-weights directory, and export components back.

Sources and the components they give:
- `videocrafter` (`model.ckpt`): `unet` (`model.diffusion_model.*`), `vae` (`first_stage_model.*`),
  `text_encoder` (`cond_stage_model.model.*`); its DDPM schedule buffers, when present, must equal
  `diffusion.schedule.make_schedule()`; any other key is an error unless it starts with one of the
  caller's extra `ignore` prefixes.
- `temporal` (`temporal_v1_1.pth`): replaces the U-Net's TemporalTransformers.
- `adapter` (`adapter_v1.pth`): `adapter`.
- `open_clip` (`open_clip_pytorch_model.bin`): `image_encoder` (`visual.*`); its text tower and
  `logit_scale` are not used (the text encoder comes from model.ckpt, as in the reference).
Components are imported and written one at a time, so the host holds at most one of them.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from stylecrafter_jax import __version__
from stylecrafter_jax.checkpoints import clip_import, official_import, pretrained, vae_import
from stylecrafter_jax.checkpoints.components import trained_tree_to_components
from stylecrafter_jax.checkpoints.torch_files import (PICKLE_SUFFIXES, file_record, flatten_nested, read_state_dict,
                                                      write_state_dict)
from stylecrafter_jax.checkpoints.torch_layout import format_mismatch
from stylecrafter_jax.diffusion.schedule import DiffusionSchedule, check_schedule_buffers
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError
from stylecrafter_jax.models.build import param_shapes
from stylecrafter_jax.models.clip import OpenCLIPTextTower, OpenCLIPVisionTower
from stylecrafter_jax.models.vae import AutoencoderKL

CONVERTER_VERSION = f"{__version__}+convert.1"
COMPONENTS = ("unet", "adapter", "vae", "text_encoder", "image_encoder")
ENCODERS = ("vae", "text_encoder", "image_encoder")
SOURCES = {"unet": "videocrafter", "vae": "videocrafter", "text_encoder": "videocrafter", "adapter": "adapter",
           "image_encoder": "open_clip"}
EXPORTS = ("adapter", "temporal", "unet")
VIDEOCRAFTER_PREFIXES = (official_import.UNET_PREFIX, vae_import.VAE_PREFIX, clip_import.VIDEOCRAFTER_TEXT_PREFIX)
DDPM_BUFFERS = DiffusionSchedule._fields
# Relative tolerance of the DDPM buffer check by stored dtype: a half-precision checkpoint rounds them.
BUFFER_RTOL = {"float32": 1e-5, "float64": 1e-5, "float16": 1e-3, "bfloat16": 8e-3}


@dataclass(frozen=True)
class OfficialFiles:
    """Paths of the official files (None: not given)."""

    videocrafter: str | None = None
    adapter: str | None = None
    temporal: str | None = None
    open_clip: str | None = None


def encoder_configs(size: str) -> ml_collections.ConfigDict:
    """{'vae', 'text_encoder', 'image_encoder'} module fields of `configs/encoders.py` for a size."""
    from configs import encoders

    if size not in encoders.SIZES:
        raise ConfigError(f"no encoder config for size {size!r} (have {encoders.SIZES}); give a config with an "
                          "`encoders` section or leave the encoders out (--only unet,adapter)")
    return ml_collections.ConfigDict({"vae": encoders.vae_config(size),
                                      "text_encoder": encoders.text_encoder_config(size),
                                      "image_encoder": encoders.image_encoder_config(size)})


def model_encoder_configs(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict | None:
    """The `vae`, `text_encoder` and `image_encoder` sections of a model config, or None if it has none."""
    if all(name in model for name in ENCODERS):
        return ml_collections.ConfigDict({name: model[name] for name in ENCODERS})
    return None


def encoder_modules(encoders: ml_collections.ConfigDict) -> dict[str, nn.Module]:
    """The frozen encoder modules built from their configs."""
    return {"vae": AutoencoderKL(**encoders.vae.to_dict()),
            "text_encoder": OpenCLIPTextTower(**encoders.text_encoder.to_dict()),
            "image_encoder": OpenCLIPVisionTower(**encoders.image_encoder.to_dict())}


def abstract_components(model: ml_collections.ConfigDict, encoders: ml_collections.ConfigDict | None = None,
                        names: Sequence[str] = COMPONENTS) -> dict[str, Any]:
    """{name: tree of ShapeDtypeStructs} of the stored components (eval_shape only, nothing allocated).

    The encoders come from `encoders`, else from the model config's own encoder sections.
    """
    encoders = encoders if encoders is not None else model_encoder_configs(model)
    abstract = {}
    if {"unet", "adapter"} & set(names):
        abstract.update(trained_tree_to_components(nn.unbox(param_shapes(model))))
    wanted_encoders = [name for name in names if name in ENCODERS]
    if wanted_encoders:
        if encoders is None:
            raise ConfigError(f"components {wanted_encoders} need encoder configs")
        modules = encoder_modules(encoders)
        shapes = {"vae": lambda: vae_import.vae_param_shapes(modules["vae"]),
                  "text_encoder": lambda: clip_import.text_param_shapes(modules["text_encoder"]),
                  "image_encoder": lambda: clip_import.vision_param_shapes(modules["image_encoder"])}
        for name in wanted_encoders:
            abstract[name] = traverse_util.unflatten_dict(
                {path: jax.ShapeDtypeStruct(shape, jnp.float32) for path, shape in shapes[name]().items()}, sep="/")
    return {name: abstract[name] for name in names}


def default_components(files: OfficialFiles) -> tuple[str, ...]:
    """The components whose source file is given."""
    given = {source for source, path in asdict(files).items() if path}
    return tuple(name for name in COMPONENTS if SOURCES[name] in given)


def check_videocrafter_keys(state_dict: Mapping[str, Any], *, source: str, ignore: Iterable[str] = ()) -> str:
    """Refuse keys of model.ckpt that belong to no component; check the DDPM buffers if present.

    Returns "checked" or "absent" (the buffers' state) for the manifest.
    """
    ignore = tuple(ignore)
    unexpected = sorted(key for key in state_dict if not key.startswith(VIDEOCRAFTER_PREFIXES)
                        and key not in DDPM_BUFFERS and not (ignore and key.startswith(ignore)))
    if unexpected:
        raise CheckpointMismatchError(format_mismatch(source, [], unexpected, [])
                                      + f"\n  (known: keys under {VIDEOCRAFTER_PREFIXES} and the DDPM buffers; "
                                        "skip others with --ignore-key PREFIX)")
    present = [name for name in DDPM_BUFFERS if name in state_dict]
    if not present:
        return "absent"
    stored = {str(getattr(state_dict[name], "dtype", "float32")) for name in present}
    rtol = max(BUFFER_RTOL.get(dtype, BUFFER_RTOL["float32"]) for dtype in stored)
    check_schedule_buffers({name: np.asarray(state_dict[name]) for name in present}, source=source, rtol=rtol)
    return "checked"


def convert_official(files: OfficialFiles, out: str, model: ml_collections.ConfigDict,
                     encoders: ml_collections.ConfigDict | None = None, names: Sequence[str] | None = None, *,
                     ignore: Iterable[str] = (), unsafe_pickle: bool = False, overwrite: bool = False,
                     hash_files: bool = True) -> dict[str, Any]:
    """Import the named components (default: all whose file is given) and write a converted directory.

    Returns the manifest written to `out/manifest.json`.
    """
    names = tuple(names or default_components(files))
    _check_request(files, names)
    pretrained.ensure_writable(out, overwrite)
    read = lambda path: read_state_dict(path, unsafe_pickle=unsafe_pickle)  # noqa: E731
    base = read(files.videocrafter) if any(SOURCES[n] == "videocrafter" for n in names) else None
    schedule = "not read"
    if base is not None:
        schedule = check_videocrafter_keys(base, source=files.videocrafter, ignore=ignore)
    encoders = encoders if encoders is not None else model_encoder_configs(model)
    abstract = abstract_components(model, encoders, names)
    modules = encoder_modules(encoders) if set(names) & set(ENCODERS) else {}
    importers = {
        "unet": lambda: official_import.unet_from_official(
            base, abstract["unet"], temporal=read(files.temporal) if files.temporal else None,
            source=files.videocrafter, temporal_source=files.temporal),
        "adapter": lambda: official_import.adapter_from_official(read(files.adapter), abstract["adapter"],
                                                                 source=files.adapter),
        "vae": lambda: vae_import.vae_params_from_official(base, modules["vae"]),
        "text_encoder": lambda: clip_import.text_params_from_open_clip(base, modules["text_encoder"]),
        "image_encoder": lambda: clip_import.vision_params_from_open_clip(read(files.open_clip),
                                                                          modules["image_encoder"]),
    }
    summary = {}
    for name in names:
        summary[name] = pretrained.save_component(out, name, importers[name](), overwrite=overwrite)
    used = {SOURCES[name] for name in names} | ({"temporal"} if files.temporal else set())
    manifest = {
        "converter_version": CONVERTER_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model_config": model.to_dict(),
        "encoder_configs": encoders.to_dict() if encoders is not None and set(names) & set(ENCODERS) else None,
        "sources": {source: (file_record(path) if hash_files else {"path": os.path.abspath(path),
                                                                   "size": os.path.getsize(path)})
                    for source, path in asdict(files).items() if source in used},
        "component_sources": {name: [SOURCES[name]] + (["temporal"] if name == "unet" and files.temporal else [])
                              for name in names},
        "ddpm_schedule_buffers": schedule,
    }
    return pretrained.write_manifest(out, manifest, summary, overwrite=overwrite)


def _check_request(files: OfficialFiles, names: Sequence[str]) -> None:
    unknown = sorted(set(names) - set(COMPONENTS))
    if unknown:
        raise ConfigError(f"components {unknown}: expected a subset of {COMPONENTS}")
    if not names:
        raise ConfigError("nothing to convert: give at least one official file")
    lacking = {name: SOURCES[name] for name in names if not getattr(files, SOURCES[name])}
    if lacking:
        raise ConfigError("; ".join(f"component {name!r} needs --{source.replace('_', '-')}"
                                    for name, source in lacking.items()))
    if files.temporal and "unet" not in names:
        raise ConfigError("--temporal replaces U-Net weights: it needs the unet component")


def export_component(directory: str, component: str, out: str, *, dtype: str = "float32") -> int:
    """Write a component of a converted (or trained) directory in the official layout; returns the tensor count.

    `adapter` -> the flat `adapter_v1.pth` dict; `temporal` -> `{module path: state dict}` (flattened to
    `<module path>.<key>` in safetensors); `unet` -> `model.diffusion_model.*`, wrapped in `{"state_dict": ...}`
    in pickles as the reference's `load_model_checkpoint` expects.
    """
    if component not in EXPORTS:
        raise ConfigError(f"export component {component!r}: expected one of {EXPORTS}")
    stored = "adapter" if component == "adapter" else "unet"
    params = pretrained.load_pretrained(directory, [stored])[stored]
    if component == "adapter":
        state_dict = official_import.adapter_to_official(params)
    elif component == "temporal":
        state_dict = official_import.temporal_to_official(params)
    else:
        state_dict = official_import.unet_to_official(params)
        if os.path.splitext(out)[1].lower() in PICKLE_SUFFIXES:
            state_dict = {"state_dict": state_dict}
    write_state_dict(out, state_dict, dtype=dtype)
    return len(flatten_nested(state_dict))
