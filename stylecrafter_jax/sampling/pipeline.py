"""The sampling pipeline: prompts and style images in, uint8 videos or images out, in three jitted calls.

1. conditioning (one jit): CLIP text context of the prompts and of "", CLIP vision tokens of the style
   references (several per sample concatenated), the StyleAdapter's style tokens and per-layer scales
   (once per sample), and the style multipliers (1 + s)·style_weight;
2. guided DDIM or DPM-Solver++(2M) (`make_sampler` from `sampling`: one jit holding the lax.scan over
   steps; all guidance branches of a step in one batched U-Net call), noise per sample from
   fold_in(seed, index);
3. VAE decode of every frame of the batch as one call (skipped for a pixel-space model), clamped to
   [-1, 1] and mapped to uint8 as the official code saves it: floor((x + 1) / 2 · 255).
Each jitted function is built once per pipeline, so calls of the same shapes reuse the compiled code.

On a mesh (all the devices of every process; one device when none is given) the parameters take the
shardings the logical-axis rules give them, as in training, and every batch is split over the batch
axes (data x fsdp): a batch is padded with copies of its last sample to a multiple of their size
(`round_batch`), and every process passes the same whole batch and gets the whole result.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from stylecrafter_jax.conditioning.encoders import decode_video, encode_style_images, encode_text_context
from stylecrafter_jax.conditioning.frozen import Encoders, build_encoders, init_encoder_params
from stylecrafter_jax.conditioning.preprocess import clip_pixels
from stylecrafter_jax.conditioning.tokenizer import ClipTokenizer
from stylecrafter_jax.diffusion.ddim import initial_noise, make_sampler, sample_keys
from stylecrafter_jax.diffusion.guidance import GuidanceInputs, style_multipliers
from stylecrafter_jax.diffusion.schedule import process_from_config
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError, ShapeError
from stylecrafter_jax.models.build import build_adapter, build_unet, init_params
from stylecrafter_jax.parallel.arrays import batch_shard_count, batch_sharding
from stylecrafter_jax.parallel.init import activation_rules
from stylecrafter_jax.parallel.mesh import MESH_AXES
from stylecrafter_jax.parallel.rules import DEFAULT_RULES, logical_shardings
from stylecrafter_jax.sampling.settings import check_sampling, pixels_per_latent, required_components
from stylecrafter_jax.trees import path_string


def check_encoder_widths(model: ml_collections.ConfigDict, encoders: Encoders) -> None:
    """ConfigError naming the first encoder whose width does not fit what the U-Net or adapter reads."""
    if encoders.text.width != model.unet.context_dim:
        raise ConfigError(f"model.text_encoder.width {encoders.text.width} must equal model.unet.context_dim "
                          f"{model.unet.context_dim}")
    if encoders.vision.width != model.adapter.image_dim:
        raise ConfigError(f"model.image_encoder.width {encoders.vision.width} must equal model.adapter.image_dim "
                          f"{model.adapter.image_dim}")
    channels = encoders.vae.embed_dim if encoders.vae is not None else 3
    if channels != model.unet.in_channels:
        raise ConfigError(f"model.unet.in_channels {model.unet.in_channels} must equal "
                          f"{'model.vae.embed_dim' if encoders.vae is not None else 'the 3 pixel channels'} {channels}")


def sampling_encoders(model: ml_collections.ConfigDict) -> Encoders:
    """The frozen encoders sampling runs, in float32 (once per sample, cheap next to the U-Net's steps)."""
    encoders = build_encoders(model, dtype="float32")
    check_encoder_widths(model, encoders)
    return encoders


def init_components(model: ml_collections.ConfigDict, key: jax.Array) -> dict[str, Any]:
    """Random parameters of every component sampling needs, boxed with their logical axis names."""
    unet_key, encoder_key = jax.random.split(key)
    return dict(init_params(model, unet_key)) | init_encoder_params(sampling_encoders(model), encoder_key)


def param_shardings(model: ml_collections.ConfigDict, mesh: Mesh, rules: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """NamedShardings of the sampling params that the logical-axis `rules` give on `mesh` (as training's)."""
    return logical_shardings(jax.eval_shape(lambda key: init_components(model, key), jax.random.key(0)), mesh, rules)


def single_device_mesh() -> Mesh:
    """A ("data", "fsdp", "tensor") mesh of this process's first device."""
    return Mesh(np.asarray(jax.local_devices()[:1]).reshape(1, 1, 1), MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def to_uint8(video: jax.Array) -> jax.Array:
    """[-1, 1] pixels → uint8 as the official saving code: clamp, (x + 1) / 2 · 255, truncated."""
    return ((jnp.clip(video, -1.0, 1.0) + 1.0) / 2.0 * 255.0).astype(jnp.uint8)


class SamplingPipeline:
    """Generates stylized videos (sampling.mode "video") or images ("image") from prompts and style references.

    params: {"unet": the U-Net with its style branches, "adapter": the StyleAdapter, "text_encoder",
    "image_encoder", and "vae" unless the model is pixel-space}, unboxed (numpy or jax arrays; assigning
    `params` later places them too). `sampling` is the config's sampling section; `mesh` and `rules`
    (default: one device, the default rules) say where parameters and batches live. With
    `report_steps`, the attribute `on_step(k)`, when set, is called from the device after DDIM step k
    of every batch (for progress bars); the host callback this needs keeps XLA's persistent compilation
    cache from storing the sampler, so it is off by default.
    """

    def __init__(self, model: ml_collections.ConfigDict, sampling: ml_collections.ConfigDict,
                 params: dict[str, Any], tokenizer: ClipTokenizer, *, report_steps: bool = False,
                 mesh: Mesh | None = None, rules: Iterable[Sequence[Any]] = DEFAULT_RULES):
        check_sampling(sampling, model)
        names = required_components(model)
        missing = [name for name in names if name not in params]
        if missing:
            raise ConfigError(f"sampling params: missing components {missing}, expected {list(names)}")
        self.model, self.sampling = model, sampling
        self.mesh, self.rules = mesh or single_device_mesh(), rules
        self._shardings = {path_string(path): sharding for path, sharding in
                           jax.tree_util.tree_leaves_with_path(param_shardings(model, self.mesh, rules))}
        self._rows = batch_sharding(self.mesh)
        self.params = {name: params[name] for name in names}
        self.tokenizer = tokenizer
        self.unet = build_unet(model)
        self.adapter = build_adapter(model)
        self.text_tower, self.vision_tower, self.vae = sampling_encoders(model)
        self.report_steps = report_steps
        self.on_step: Callable[[int], None] | None = None
        self.sampler = make_sampler(self._model_fn, process_from_config(model), sampling,
                                    on_step=self._step_done if report_steps else None)
        self._empty_tokens = np.asarray(tokenizer([""]))
        self._condition = jax.jit(self._condition_fn)
        self._start = jax.jit(self._start_fn, out_shardings=(self._rows, self._rows))
        self._decode = jax.jit(self._decode_fn, out_shardings=NamedSharding(self.mesh, PartitionSpec()))

    @property
    def params(self) -> dict[str, Any]:
        """The parameters, placed in their shardings on the mesh."""
        return self._params

    @params.setter
    def params(self, params: dict[str, Any]) -> None:
        def place(path: tuple, leaf: Any) -> jax.Array:
            name = path_string(path)
            sharding = self._shardings.get(name)
            if sharding is None:
                raise CheckpointMismatchError(f"sampling params: unexpected leaf {name} of shape {np.shape(leaf)} "
                                              f"for the {self.model.size!r} model")
            if isinstance(leaf, jax.Array) and leaf.is_fully_addressable == sharding.is_fully_addressable:
                return jax.device_put(leaf, sharding)
            host = np.asarray(leaf)  # host data, or one process's local copy: every process holds it whole
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

        self._params = jax.tree_util.tree_map_with_path(place, params)

    def round_batch(self, batch_size: int) -> int:
        """`batch_size` rounded up to a multiple of the mesh's batch shards (data x fsdp)."""
        shards = batch_shard_count(self.mesh)
        return -(-batch_size // shards) * shards

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(frames, height / f, width / f, channels) of one sample's latents."""
        f = pixels_per_latent(self.model)
        return (self.sampling.frames, self.sampling.height // f, self.sampling.width // f,
                self.model.unet.in_channels)

    @property
    def num_steps(self) -> int:
        """Denoising steps per batch."""
        return self.sampler.num_steps

    def _step_done(self, step: int) -> None:
        if self.on_step is not None:
            self.on_step(step)

    def _model_fn(self, params: Any, x: jax.Array, t: jax.Array, context: jax.Array,
                  style_scales: jax.Array) -> jax.Array:
        return self.unet.apply({"params": params}, x, t, context, style_scales)

    def _rows_of(self, array: np.ndarray | jax.Array, pad: int) -> jax.Array:
        """A whole host batch, padded with `pad` copies of its last row, split over the batch axes."""
        host = np.asarray(array)
        host = np.concatenate([host, np.repeat(host[-1:], pad, axis=0)]) if pad else host
        return jax.make_array_from_callback(host.shape, self._rows, lambda index: host[index])

    def _replicated(self, value: np.ndarray) -> jax.Array:
        return jax.make_array_from_callback(value.shape, NamedSharding(self.mesh, PartitionSpec()),
                                            lambda index: value[index])

    def _start_fn(self, seed: jax.Array, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per-sample keys fold_in(seed, index) and x_T from them, split over the batch axes."""
        keys = sample_keys(jax.random.key(seed), indices)
        return keys, initial_noise(keys, self.latent_shape)

    def _condition_fn(self, params: dict, tokens: jax.Array, style_images: jax.Array,
                      style_weight: jax.Array) -> GuidanceInputs:
        """GuidanceInputs of a batch, U-Net params left out: tokens (B, 77), style images (B, n_ref, S, S, 3)."""
        text = encode_text_context(self.text_tower, params["text_encoder"], tokens)
        empty = encode_text_context(self.text_tower, params["text_encoder"], jnp.asarray(self._empty_tokens))
        pixels = clip_pixels(style_images, self.vision_tower.image_size)
        image_tokens, _ = encode_style_images(self.vision_tower, params["image_encoder"], pixels)
        style, scales = self.adapter.apply({"params": params["adapter"]}, image_tokens, text)
        return GuidanceInputs(params=None, text=text, empty_text=empty, style=style,
                              multipliers=style_multipliers(scales, style_weight))

    def _decode_fn(self, params: dict, latents: jax.Array) -> jax.Array:
        if self.vae is None:
            return to_uint8(latents)
        return to_uint8(decode_video(self.vae, params["vae"], latents))

    def condition(self, prompts: Sequence[str], style_images: np.ndarray | jax.Array) -> GuidanceInputs:
        """Text and style conditioning of a batch: one prompt and (n_ref, S, S, 3) style images per sample."""
        inputs, count = self._conditioned(prompts, style_images)
        return inputs._replace(text=inputs.text[:count], style=inputs.style[:count],
                               multipliers=inputs.multipliers[:count])

    def _conditioned(self, prompts: Sequence[str], style_images: np.ndarray | jax.Array
                     ) -> tuple[GuidanceInputs, int]:
        """(GuidanceInputs of the batch padded to `round_batch`, the number of real samples)."""
        style_images = np.asarray(style_images, np.float32)
        if style_images.ndim != 5 or style_images.shape[0] != len(prompts) or style_images.shape[-1] != 3:
            raise ShapeError(f"style_images: got shape {style_images.shape}, expected ({len(prompts)}, n_ref, "
                             "size, size, 3) in [-1, 1], one set of references per prompt")
        pad = self.round_batch(len(prompts)) - len(prompts)
        tokens = self._rows_of(self.tokenizer(list(prompts)), pad)
        weight = self._replicated(np.asarray(self.sampling.style_weight, np.float32))
        with activation_rules(self.mesh, self.rules):
            inputs = self._condition(self.params, tokens, self._rows_of(style_images, pad), weight)
        return inputs._replace(params=self.params["unet"]), len(prompts)

    def _padded_latents(self, prompts: Sequence[str], style_images: np.ndarray | jax.Array,
                        indices: Sequence[int], seed: int) -> tuple[jax.Array, int]:
        """(latents of the batch padded to `round_batch`, the number of real samples)."""
        if len(indices) != len(prompts):
            raise ShapeError(f"indices: got {len(indices)} for {len(prompts)} prompts, expected one per prompt")
        cond, count = self._conditioned(prompts, style_images)
        pad = self.round_batch(count) - count
        rows = self._rows_of(np.asarray(indices, np.uint32), pad)
        with activation_rules(self.mesh, self.rules):
            keys, x_T = self._start(self._replicated(np.asarray(seed, np.uint32)), rows)
            return self.sampler.sample_from(cond, x_T, keys), count

    def latents(self, prompts: Sequence[str], style_images: np.ndarray | jax.Array, indices: Sequence[int],
                seed: int) -> jax.Array:
        """Denoised latents (B, t, h / f, w / f, c); sample i draws its noise from fold_in(seed, indices[i])."""
        latents, count = self._padded_latents(prompts, style_images, indices, seed)
        return latents[:count]

    def _pixels(self, latents: jax.Array) -> np.ndarray:
        with activation_rules(self.mesh, self.rules):
            return np.asarray(self._decode(self.params, latents))

    def decode(self, latents: np.ndarray | jax.Array) -> np.ndarray:
        """uint8 pixels (B, t, h, w, 3) of latents, every frame of the batch in one VAE call."""
        count = len(latents)
        return self._pixels(self._rows_of(latents, self.round_batch(count) - count))[:count]

    def __call__(self, prompts: Sequence[str], style_images: np.ndarray | jax.Array, indices: Sequence[int],
                 seed: int) -> np.ndarray:
        """uint8 videos (B, frames, height, width, 3); images have frames = 1."""
        latents, count = self._padded_latents(prompts, style_images, indices, seed)
        return self._pixels(latents)[:count]
