"""Strict import and export of the official U-Net (`model.ckpt`, `temporal_v1_1.pth`) and style adapter
(`adapter_v1.pth`) state dicts.

- U-Net: the keys under `model.diffusion_model.` of the VideoCrafter checkpoint. A temporal file
  (`temporal_v1_1.pth`: `{module path: TemporalTransformer state dict}`, or the same flattened to
  `<module path>.<inner key>`) replaces the weights of every TemporalTransformer (`init_attn.0` and the
  `.2` children of the blocks), as the reference's `load_pretrained_temporal` does; it must hold
  exactly those modules, all of them.
- Adapter: the flat `adapter_v1.pth` keys `image_context_model.*`, `scale_predictor.*` and
  `kv_attn_layers.<processor path with '.'→'_'>.*`, which become the adapter component
  `{'adapter': StyleAdapter params, 'processors': the U-Net's `…/attn2/processor/` leaves}`.
- Image-to-video checkpoints (VideoCrafter1 I2V, DynamiCrafter): the projector under
  `image_proj_model.` and the CLIP vision tower under `embedder.model.visual.`; DynamiCrafter 256
  stores `fps_embedding` as `framestride_embed` (`FRAMESTRIDE_RENAME`), renamed as the reference's
  loader does and renamed back on export.

Ignored on import (documented): `model.diffusion_model.<…>.attn2.processor.*`, the aliases of the
adapter's `kv_attn_layers.*` that a merged StyleCrafter state dict carries, and by name the six
`official_keys.IMAGE_EMBEDDER_UNUSED` text leftovers of the image embedder; keys outside a
component's prefix are left to the other components' importers. Everything else is strict: one
CheckpointMismatchError lists all missing, unexpected and mis-shaped keys. The input state dicts
may hold `torch_files.TensorRef`s; each tensor is converted when its leaf is built.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import numpy as np
from flax import traverse_util

from stylecrafter_jax.checkpoints.key_maps import (expected_torch_shapes, export_state_dict, flat_shapes,
                                                   import_state_dict)
from stylecrafter_jax.checkpoints.official_keys import (IMAGE_EMBEDDER_PREFIX, IMAGE_EMBEDDER_UNUSED,
                                                        PROJECTOR_PREFIX, UNET_PREFIX, KeySpec, adapter_key,
                                                        image_embedder_key, module_path_to_torch, projector_key,
                                                        unet_key)
from stylecrafter_jax.checkpoints.torch_layout import check_state_dict

PROCESSOR_ALIAS = ".attn2.processor."
FRAMESTRIDE_RENAME = {UNET_PREFIX + "fps_embedding.": UNET_PREFIX + "framestride_embed."}
"""Our prefix -> DynamiCrafter 256's prefix of the frame-stride embedding."""
_TEMPORAL_MARKER = "/transformer_blocks_0/attn1/relative_position_k/embeddings_table"


def temporal_module_paths(unet: Any) -> list[str]:
    """Torch module paths (`init_attn.0`, `input_blocks.1.2`, ...) of the U-Net's TemporalTransformers."""
    paths = flat_shapes(unet)
    return sorted(module_path_to_torch(p[:-len(_TEMPORAL_MARKER)]) for p in paths if p.endswith(_TEMPORAL_MARKER))


def _shapes(state_dict: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(np.shape(value)) for key, value in state_dict.items()}


def unet_from_official(state_dict: Mapping[str, Any], unet: Any, *, temporal: Mapping[str, Any] | None = None,
                       source: str = "model.ckpt", temporal_source: str = "temporal file") -> dict:
    """Base U-Net parameters (no `processor` leaves) shaped like the abstract tree `unet`.

    `state_dict` is the VideoCrafter checkpoint's (keys under other prefixes are not looked at);
    `temporal` is the flattened temporal file, whose weights replace the checkpoint's.
    """
    shapes = flat_shapes(unet)
    if any("/processor/" in path for path in shapes):
        raise ValueError("unet_from_official: the abstract tree has style-branch (processor) leaves; pass the "
                         "base U-Net (components.split_processors), the processors come from the adapter file")
    expected = expected_torch_shapes(shapes, unet_key)
    got = {key: value for key, value in state_dict.items()
           if key.startswith(UNET_PREFIX) and PROCESSOR_ALIAS not in key}
    check_state_dict(expected, _shapes(got), source=f"{source} (keys under {UNET_PREFIX!r})")
    if temporal is not None:
        prefixes = tuple(f"{UNET_PREFIX}{path}." for path in temporal_module_paths(unet))
        expected_temporal = {key[len(UNET_PREFIX):]: shape for key, shape in expected.items()
                             if key.startswith(prefixes)}
        check_state_dict(expected_temporal, _shapes(temporal),
                         source=f"{temporal_source} ({len(prefixes)} TemporalTransformers)")
        got.update({UNET_PREFIX + key: value for key, value in temporal.items()})
    return import_state_dict(got, shapes, unet_key, source=source)


def adapter_component_key(path: str, ndim: int) -> KeySpec:
    """Key of an adapter-component leaf: `adapter/...` (StyleAdapter) or `processors/...` (U-Net style branches)."""
    group, rest = path.split("/", 1)
    return adapter_key(rest, ndim) if group == "adapter" else unet_key(rest, ndim)


def adapter_from_official(state_dict: Mapping[str, Any], component: Any, *, source: str = "adapter_v1.pth") -> dict:
    """The adapter component `{'adapter', 'processors'}` shaped like the abstract tree `component`."""
    return import_state_dict(state_dict, flat_shapes(component), adapter_component_key, source=source)


def adapter_to_official(component: Any) -> dict[str, np.ndarray]:
    """The flat `adapter_v1.pth` state dict of an adapter component."""
    return export_state_dict(component, adapter_component_key)


def unet_to_official(unet: Any) -> dict[str, np.ndarray]:
    """The `model.diffusion_model.*` state dict of base U-Net parameters."""
    return export_state_dict(unet, unet_key)


def temporal_to_official(unet: Any) -> dict[str, dict[str, np.ndarray]]:
    """The nested `temporal_*.pth` dict `{module path: TemporalTransformer state dict}` of U-Net parameters."""
    prefixes = {f"{UNET_PREFIX}{path}.": path for path in temporal_module_paths(unet)}
    flat = traverse_util.flatten_dict(nn.unbox(unet), sep="/")
    owner = lambda key: next((p for p in prefixes if key.startswith(p)), None)  # noqa: E731
    subset = {path: leaf for path, leaf in flat.items() if owner(unet_key(path, np.ndim(leaf)).torch_key)}
    nested: dict[str, dict[str, np.ndarray]] = {path: {} for path in prefixes.values()}
    for key, tensor in export_state_dict(traverse_util.unflatten_dict(subset, sep="/"), unet_key).items():
        prefix = owner(key)
        nested[prefixes[prefix]][key[len(prefix):]] = tensor
    return nested


def rename_prefixes(state_dict: Mapping[str, Any], renames: Mapping[str, str]) -> dict[str, Any]:
    """The state dict with every key starting with a `renames` key given that key's value as its prefix."""
    def renamed(key: str) -> str:
        old = next((prefix for prefix in renames if key.startswith(prefix)), None)
        return key if old is None else renames[old] + key[len(old):]

    return {renamed(key): value for key, value in state_dict.items()}


def file_renames(state_dict: Mapping[str, Any]) -> dict[str, str]:
    """The subset of `FRAMESTRIDE_RENAME` (ours -> file's) this state dict uses: the DC256 layout."""
    return {ours: theirs for ours, theirs in FRAMESTRIDE_RENAME.items()
            if any(key.startswith(theirs) for key in state_dict)
            and not any(key.startswith(ours) for key in state_dict)}


def projector_from_official(state_dict: Mapping[str, Any], projector: Any, *, source: str = "model.ckpt") -> dict:
    """Resampler parameters shaped like the abstract tree `projector`, from the `image_proj_model.*` keys."""
    got = {key: value for key, value in state_dict.items() if key.startswith(PROJECTOR_PREFIX)}
    return import_state_dict(got, flat_shapes(projector), projector_key,
                             source=f"{source} (keys under {PROJECTOR_PREFIX!r})")


def projector_to_official(projector: Any) -> dict[str, np.ndarray]:
    """The `image_proj_model.*` state dict of Resampler parameters."""
    return export_state_dict(projector, projector_key)


def image_embedder_from_official(state_dict: Mapping[str, Any], tower: Any, *, source: str = "model.ckpt") -> dict:
    """CLIP vision-tower parameters shaped like the abstract tree `tower`, from `embedder.model.visual.*`."""
    got = {key: value for key, value in state_dict.items()
           if key.startswith(IMAGE_EMBEDDER_PREFIX) and key not in IMAGE_EMBEDDER_UNUSED}
    return import_state_dict(got, flat_shapes(tower), image_embedder_key,
                             source=f"{source} (keys under {IMAGE_EMBEDDER_PREFIX + 'visual.'!r})")


def image_embedder_to_official(tower: Any) -> dict[str, np.ndarray]:
    """The `embedder.model.visual.*` state dict of CLIP vision-tower parameters."""
    return export_state_dict(tower, image_embedder_key)
