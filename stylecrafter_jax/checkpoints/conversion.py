"""Convert the official PyTorch files into a converted-weights directory, and export components back.

Sources and the components they give, for a StyleCrafter model:
- `videocrafter` (`model.ckpt`): `unet` (`model.diffusion_model.*`), `vae` (`first_stage_model.*`),
  `text_encoder` (`cond_stage_model.model.*`) and `schedule` (its DDPM buffers, when present, checked
  against the config by `diffusion.schedule.process_from_buffers`); any other key is an error unless
  it starts with one of the caller's extra `ignore` prefixes.
- `temporal` (`temporal_v1_1.pth`): replaces the U-Net's TemporalTransformers.
- `adapter` (`adapter_v1.pth`): `adapter`.
- `open_clip` (`open_clip_pytorch_model.bin`): `image_encoder` (`visual.*`); its text tower and
  `logit_scale` are not used (the text encoder comes from model.ckpt, as in the reference).
For an image-to-video model, one file, `videocrafter_i2v` (VideoCrafter1 I2V) or `dynamicrafter`, gives
every component: `unet`, `projector` (`image_proj_model.*`), `image_encoder` (`embedder.model.visual.*`),
`text_encoder`, `vae` and `schedule` (the 12 DDPM buffers, and `scale_arr` for a rescaled model). It is
checked as a whole (every key accounted for; only the embedder's `IMAGE_EMBEDDER_UNUSED` are skipped, by
name) after a one-line check that it is the config's variant; DynamiCrafter 256's `framestride_embed`
is renamed, recorded in the manifest and renamed back on export.
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
from stylecrafter_jax.checkpoints.key_maps import add_prefix, expected_torch_shapes, flat_shapes
from stylecrafter_jax.checkpoints.official_keys import (IMAGE_EMBEDDER_UNUSED, PROJECTOR_PREFIX, UNET_PREFIX,
                                                        image_embedder_key, projector_key, unet_key)
from stylecrafter_jax.checkpoints.torch_files import (PICKLE_SUFFIXES, file_record, flatten_nested, read_state_dict,
                                                      write_state_dict)
from stylecrafter_jax.checkpoints.torch_layout import check_state_dict, format_mismatch
from stylecrafter_jax.diffusion.schedule import DiffusionSchedule, process_from_buffers, process_from_config
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError
from stylecrafter_jax.models import sizes, variants
from stylecrafter_jax.models.build import has_image, param_shapes
from stylecrafter_jax.models.clip import OpenCLIPTextTower, OpenCLIPVisionTower
from stylecrafter_jax.models.vae import AutoencoderKL

CONVERTER_VERSION = f"{__version__}+convert.2"
SCHEDULE = "schedule"
"""The component of a checkpoint's schedule buffers as stored (not a parameter tree: `process_from_buffers` reads it;
written when the file has them)."""
COMPONENTS = ("unet", "adapter", "projector", "vae", "text_encoder", "image_encoder", SCHEDULE)
ENCODERS = ("vae", "text_encoder", "image_encoder")
SOURCES = {"unet": "videocrafter", "vae": "videocrafter", "text_encoder": "videocrafter", "adapter": "adapter",
           "image_encoder": "open_clip", SCHEDULE: "videocrafter"}
IMAGE_TO_VIDEO_COMPONENTS = ("unet", "projector", "vae", "text_encoder", "image_encoder", SCHEDULE)
EXPORTS = ("adapter", "temporal", "unet", "projector")
VIDEOCRAFTER_PREFIXES = (official_import.UNET_PREFIX, vae_import.VAE_PREFIX, clip_import.VIDEOCRAFTER_TEXT_PREFIX)
DDPM_BUFFERS = DiffusionSchedule._fields
BUFFERS = DDPM_BUFFERS + ("scale_arr",)


@dataclass(frozen=True)
class OfficialFiles:
    """Paths of the official files (None: not given)."""

    videocrafter: str | None = None
    adapter: str | None = None
    temporal: str | None = None
    open_clip: str | None = None
    videocrafter_i2v: str | None = None
    dynamicrafter: str | None = None


def encoder_configs(size: str) -> ml_collections.ConfigDict:
    """{'vae', 'text_encoder', 'image_encoder'} module fields of the encoder size tables for a size."""
    if size not in sizes.ENCODER_SIZES:
        raise ConfigError(f"no encoder config for size {size!r} (have {sizes.ENCODER_SIZES}); give a config with "
                          "an `encoders` section or leave the encoders out (--only unet,adapter)")
    return ml_collections.ConfigDict({"vae": sizes.vae_config(size),
                                      "text_encoder": sizes.text_encoder_config(size),
                                      "image_encoder": sizes.image_encoder_config(size)})


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


def model_sources(model: ml_collections.ConfigDict) -> dict[str, str]:
    """{component: the `OfficialFiles` field it comes from} for the model config (style or image-to-video)."""
    if not has_image(model):
        return dict(SOURCES)
    source = "dynamicrafter" if variants.is_dynamicrafter(model.variant) else "videocrafter_i2v"
    return dict.fromkeys(IMAGE_TO_VIDEO_COMPONENTS, source)


def abstract_components(model: ml_collections.ConfigDict, encoders: ml_collections.ConfigDict | None = None,
                        names: Sequence[str] | None = None) -> dict[str, Any]:
    """{name: tree of ShapeDtypeStructs} of the stored parameter components (eval_shape only, nothing allocated).

    `names` defaults to every component of the model (`SCHEDULE`, not a parameter tree, is left out); the
    encoders come from `encoders`, else from the model config's own encoder sections.
    """
    names = tuple(name for name in (model_sources(model) if names is None else names) if name != SCHEDULE)
    encoders = encoders if encoders is not None else model_encoder_configs(model)
    abstract = {}
    if {"unet", "adapter", "projector"} & set(names):
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
    missing = [name for name in names if name not in abstract]
    if missing:
        raise ConfigError(f"components {missing}: the config's model has none (it has {tuple(model_sources(model))})")
    return {name: abstract[name] for name in names}


def default_components(files: OfficialFiles, sources: Mapping[str, str] = SOURCES) -> tuple[str, ...]:
    """The components whose source file is given."""
    given = {source for source, path in asdict(files).items() if path}
    return tuple(name for name in COMPONENTS if name in sources and sources[name] in given)


def stored_buffers(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The schedule buffers (`BUFFERS`) of a state dict as numpy arrays of their stored dtype."""
    def stored(value: Any) -> np.ndarray:
        dtype = getattr(value, "dtype", None)
        return np.asarray(value).astype(np.dtype(str(dtype)) if dtype is not None else None, copy=False)

    return {name: stored(state_dict[name]) for name in BUFFERS if name in state_dict}


def check_schedule(state_dict: Mapping[str, Any], model: ml_collections.ConfigDict, *,
                   source: str) -> dict[str, np.ndarray]:
    """The state dict's schedule buffers as stored, after `process_from_buffers` checked them against the config."""
    buffers = stored_buffers(state_dict)
    process_from_buffers(buffers, model, source=source)
    return buffers


def check_videocrafter_keys(state_dict: Mapping[str, Any], model: ml_collections.ConfigDict, *, source: str,
                            ignore: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Refuse keys of model.ckpt that belong to no component; check the schedule buffers if present.

    Returns the buffers as stored (empty when the file has none).
    """
    ignore = tuple(ignore)
    unexpected = sorted(key for key in state_dict if not key.startswith(VIDEOCRAFTER_PREFIXES)
                        and key not in BUFFERS and not (ignore and key.startswith(ignore)))
    if unexpected:
        raise CheckpointMismatchError(format_mismatch(source, [], unexpected, [])
                                      + f"\n  (known: keys under {VIDEOCRAFTER_PREFIXES} and the DDPM buffers; "
                                        "skip others with --ignore-key PREFIX)")
    return check_schedule(state_dict, model, source=source)


def _variant_features(in_channels: int | None, learned: bool, prediction: str | None, ztsnr: bool | None,
                      rescale_base: float | None) -> dict[str, str]:
    """Readable features that tell the image-to-video variants apart (None: not in the file)."""
    features = {"learned": "learned image-attention weights (alpha)" if learned else "a fixed image-attention weight"}
    if in_channels is not None:
        features["in_channels"] = f"{in_channels}-channel input"
    if prediction is not None:
        features["prediction"] = f"{prediction}-prediction"
    if ztsnr is not None:
        features["betas"] = "zero-terminal-SNR betas" if ztsnr else "scaled-linear betas"
    features["rescale"] = "no scale_arr" if rescale_base is None else f"scale_arr base {rescale_base:g}"
    return features


def _config_features(unet: Mapping[str, Any], diffusion: Mapping[str, Any]) -> dict[str, str]:
    rescale = diffusion.get("rescale", "none")
    return _variant_features(int(unet["in_channels"]), bool(unet.get("image_scale_learnable", False)),
                             diffusion.get("prediction", "eps"), bool(diffusion.get("zero_terminal_snr", False)),
                             None if rescale == "none" else round(float(diffusion.get("rescale_base", 0.7)), 2))


def _file_features(state_dict: Mapping[str, Any]) -> dict[str, str]:
    conv_in = state_dict.get(UNET_PREFIX + "input_blocks.0.0.weight")
    learned = any(key.startswith(UNET_PREFIX) and key.endswith(".attn2.alpha") for key in state_dict) or any(
        key.startswith(tuple(official_import.FRAMESTRIDE_RENAME.values())) for key in state_dict)
    recip = state_dict.get("sqrt_recip_alphas_cumprod")
    prediction = None if recip is None else ("v" if not np.asarray(recip).any() else "eps")
    alphas_cumprod = state_dict.get("alphas_cumprod")
    ztsnr = None if alphas_cumprod is None else bool(abs(float(np.asarray(alphas_cumprod)[-1])) < 1e-8)
    scale_arr = state_dict.get("scale_arr")
    base = None if scale_arr is None else round(float(np.asarray(scale_arr)[-1]), 2)
    features = _variant_features(None if conv_in is None else int(np.shape(conv_in)[1]), learned, prediction, ztsnr,
                                 base)
    if not any(name in state_dict for name in BUFFERS):  # weights only: nothing to say about the schedule
        del features["rescale"]
    return features


def check_variant(state_dict: Mapping[str, Any], model: ml_collections.ConfigDict, *, source: str) -> None:
    """One-line CheckpointMismatchError if the file is not a checkpoint of the config's image-to-video variant."""
    variant = model.variant
    if PROJECTOR_PREFIX + "latents" not in state_dict:
        raise CheckpointMismatchError(f"{source}: holds no image projector ({PROJECTOR_PREFIX}*), so it is not an "
                                      f"image-to-video checkpoint; the config's model is {variant}")
    found = _file_features(state_dict)
    expected = _config_features(model.unet, model.diffusion)
    differ = [name for name in found if name in expected and found[name] != expected[name]]
    if not differ:
        return
    matching = [name for name in variants.VARIANTS
                if {k: v for k, v in _config_features(variants.unet_fields(name, "tiny"),
                                                      variants.diffusion_fields(name)).items() if k in found} == found]
    kind = f"a {' / '.join(matching)} checkpoint" if matching else "no known variant"
    raise CheckpointMismatchError(
        f"{source}: found {', '.join(found[n] for n in differ)} ({kind}), but the config's model {variant} expects "
        f"{', '.join(expected[n] for n in differ)}; give the config of the file's variant")


def image_to_video_key_table(abstract: Mapping[str, Any], model: ml_collections.ConfigDict) -> dict[str, tuple]:
    """{official key: torch shape} of every tensor of an image-to-video checkpoint (U-Net keys as we name them)."""
    table = {}
    table.update(expected_torch_shapes(flat_shapes(abstract["unet"]), unet_key))
    table.update(expected_torch_shapes(flat_shapes(abstract["projector"]), projector_key))
    table.update(expected_torch_shapes(flat_shapes(abstract["image_encoder"]), image_embedder_key))
    table.update(add_prefix(expected_torch_shapes(flat_shapes(abstract["text_encoder"]), clip_import.open_clip_key),
                            clip_import.VIDEOCRAFTER_TEXT_PREFIX))
    table.update(add_prefix(expected_torch_shapes(flat_shapes(abstract["vae"]), vae_import.official_vae_key),
                            vae_import.VAE_PREFIX))
    process = process_from_config(model)
    table.update({name: tuple(buffer.shape) for name, buffer in process.schedule._asdict().items()})
    if process.scale_arr is not None:
        table["scale_arr"] = tuple(process.scale_arr.shape)
    return table


def read_image_to_video(state_dict: Mapping[str, Any], model: ml_collections.ConfigDict,
                        encoders: ml_collections.ConfigDict, *, source: str, ignore: Iterable[str] = (),
                        abstract: Mapping[str, Any] | None = None
                        ) -> tuple[dict[str, Any], dict[str, str], dict[str, np.ndarray]]:
    """(state dict with our U-Net key names, renames applied {ours: file's}, schedule buffers as stored) of an
    image-to-video checkpoint, after the variant, whole-file key and schedule checks.

    `abstract`: every component's abstract tree (`abstract_components(model, encoders)`), if already at hand.
    """
    check_variant(state_dict, model, source=source)
    renames = official_import.file_renames(state_dict)
    renamed = official_import.rename_prefixes(state_dict, {theirs: ours for ours, theirs in renames.items()})
    table = image_to_video_key_table(abstract or abstract_components(model, encoders), model)
    got = {key: tuple(np.shape(value)) for key, value in renamed.items() if key not in IMAGE_EMBEDDER_UNUSED}
    check_state_dict(table, got, source=source, ignore=ignore)
    return renamed, renames, check_schedule(renamed, model, source=source)


def convert_official(files: OfficialFiles, out: str, model: ml_collections.ConfigDict,
                     encoders: ml_collections.ConfigDict | None = None, names: Sequence[str] | None = None, *,
                     ignore: Iterable[str] = (), unsafe_pickle: bool = False, overwrite: bool = False,
                     hash_files: bool = True) -> dict[str, Any]:
    """Import the named components (default: all whose file is given) and write a converted directory.

    Returns the manifest written to `out/manifest.json`.
    """
    sources = model_sources(model)
    names = tuple(names or default_components(files, sources))
    _check_request(files, names, sources, model)
    pretrained.ensure_writable(out, overwrite)
    read = lambda path: read_state_dict(path, unsafe_pickle=unsafe_pickle)  # noqa: E731
    encoders = encoders if encoders is not None else model_encoder_configs(model)
    base_source = sources.get("unet", "videocrafter")
    base_path = getattr(files, base_source)
    base, renames, buffers = None, {}, {}
    abstract = abstract_components(model, encoders, None if has_image(model) else names)
    if any(sources[n] == base_source for n in names):
        base = read(base_path)
        if has_image(model):
            base, renames, buffers = read_image_to_video(base, model, encoders, source=base_path, ignore=ignore,
                                                         abstract=abstract)
        else:
            buffers = check_videocrafter_keys(base, model, source=base_path, ignore=ignore)
    modules = encoder_modules(encoders) if set(names) & set(ENCODERS) else {}
    importers = {
        "unet": lambda: official_import.unet_from_official(
            base, abstract["unet"], temporal=read(files.temporal) if files.temporal else None,
            source=base_path, temporal_source=files.temporal),
        "adapter": lambda: official_import.adapter_from_official(read(files.adapter), abstract["adapter"],
                                                                 source=files.adapter),
        "projector": lambda: official_import.projector_from_official(base, abstract["projector"], source=base_path),
        "vae": lambda: vae_import.vae_params_from_official(base, modules["vae"]),
        "text_encoder": lambda: clip_import.text_params_from_open_clip(base, modules["text_encoder"]),
        SCHEDULE: lambda: buffers,
        "image_encoder": (lambda: official_import.image_embedder_from_official(base, abstract["image_encoder"],
                                                                               source=base_path))
        if has_image(model) else (lambda: clip_import.vision_params_from_open_clip(read(files.open_clip),
                                                                                  modules["image_encoder"])),
    }
    names = tuple(name for name in names if name != SCHEDULE or buffers)
    summary = {}
    for name in names:
        summary[name] = pretrained.save_component(out, name, importers[name](), overwrite=overwrite)
    used = {sources[name] for name in names} | ({"temporal"} if files.temporal else set())
    manifest = {
        "converter_version": CONVERTER_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model_config": model.to_dict(),
        "encoder_configs": encoders.to_dict() if encoders is not None and set(names) & set(ENCODERS) else None,
        "sources": {source: (file_record(path) if hash_files else {"path": os.path.abspath(path),
                                                                   "size": os.path.getsize(path)})
                    for source, path in asdict(files).items() if source in used},
        "component_sources": {name: [sources[name]] + (["temporal"] if name == "unet" and files.temporal else [])
                              for name in names},
        "ddpm_schedule_buffers": "not read" if base is None else ("checked" if buffers else "absent"),
        "official_key_renames": renames,
    }
    return pretrained.write_manifest(out, manifest, summary, overwrite=overwrite)


def _flag(source: str) -> str:
    return "--" + source.replace("_", "-")


def _check_request(files: OfficialFiles, names: Sequence[str], sources: Mapping[str, str],
                   model: ml_collections.ConfigDict) -> None:
    unknown = sorted(set(names) - set(sources))
    if unknown:
        raise ConfigError(f"components {unknown}: expected a subset of {tuple(sources)}")
    takes = set(sources.values()) | ({"temporal"} if "unet" in sources and not has_image(model) else set())
    stray = [source for source, path in asdict(files).items() if path and source not in takes]
    if stray:
        kind = model.get("variant", "StyleCrafter")
        raise ConfigError(f"{_flag(stray[0])}: the config's model ({kind}) takes no such file; it reads "
                          f"{', '.join(_flag(s) for s in sorted(takes))}")
    if not names:
        raise ConfigError("nothing to convert: give at least one official file")
    lacking = {name: sources[name] for name in names if not getattr(files, sources[name])}
    if lacking:
        raise ConfigError("; ".join(f"component {name!r} needs {_flag(source)}" for name, source in lacking.items()))
    if files.temporal and "unet" not in names:
        raise ConfigError("--temporal replaces U-Net weights: it needs the unet component")


def export_component(directory: str, component: str, out: str, *, dtype: str = "float32") -> int:
    """Write a component of a converted (or trained) directory in the official layout; returns the tensor count.

    `adapter` -> the flat `adapter_v1.pth` dict; `temporal` -> `{module path: state dict}` (flattened to
    `<module path>.<key>` in safetensors); `unet` -> `model.diffusion_model.*` (with the file's own names
    where the import renamed some), wrapped in `{"state_dict": ...}` in pickles as the reference's
    `load_model_checkpoint` expects; `projector` -> `image_proj_model.*`, wrapped the same way.
    """
    if component not in EXPORTS:
        raise ConfigError(f"export component {component!r}: expected one of {EXPORTS}")
    stored = "unet" if component == "temporal" else component
    params = pretrained.load_pretrained(directory, [stored])[stored]
    if component == "adapter":
        state_dict = official_import.adapter_to_official(params)
    elif component == "temporal":
        state_dict = official_import.temporal_to_official(params)
    else:
        if component == "projector":
            state_dict = official_import.projector_to_official(params)
        else:
            renames = pretrained.read_manifest(directory).get("official_key_renames", {})
            state_dict = official_import.rename_prefixes(official_import.unet_to_official(params), renames)
        if os.path.splitext(out)[1].lower() in PICKLE_SUFFIXES:
            state_dict = {"state_dict": state_dict}
    write_state_dict(out, state_dict, dtype=dtype)
    return len(flatten_nested(state_dict))
