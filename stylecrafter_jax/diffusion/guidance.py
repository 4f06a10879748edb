"""Multi-condition classifier-free guidance (text, style, image), every branch of a step in one model call.

The wrapped model function has the contract
    out = model_fn(params, x, t, context, style_scales, **model_kwargs)
with x (N, ...) latents, t (N,) int timesteps, context (N, L, C) the text tokens followed by the image
tokens (image-to-video models) and then the style tokens (style models), style_scales (N, n_cross)
multipliers of the style branch of each cross-attention layer (None for a model without style), and
model_kwargs the per-sample arrays of `GuidanceInputs.model_kwargs` (e.g. DynamiCrafter's concatenated
image latent and frame stride), which every branch gets unchanged. `out` is eps or v, whatever the
model predicts; guidance is linear, so the combination is the same in both spaces. A style multiplier
of 0 switches the style branch off, which equals the official "no style tokens" call because that
branch is purely additive; so all branches share one token count and stack on the batch axis.

A branch keeps or drops each condition: the text (dropped: the empty prompt ""), the image tokens
(dropped: the tokens of the empty image, which the caller computes, e.g. CLIP of a gray image) and
the style (dropped: multipliers 0). The plans, by branch order:
- video with style, three branches [e_ts; e_t; e_u] = [all; all but style; none] (image tokens, when
  present, go with the text):
    official (released StyleCrafter code): e_ts + λs·(e_ts − e_t) + λt·(e_t − e_u)     λt = 15, λs = 7.5
    paper (anchored at e_u):                e_u  + λs·(e_ts − e_t) + λt·(e_t − e_u)
- video with image tokens and an image scale s_img (DynamiCrafter's --multiple_cond_cfg), three branches
  [e(I,T); e(I,∅); e(∅,∅)]: e(∅,∅) + s_img·(e(I,∅) − e(∅,∅)) + λt·(e(I,T) − e(I,∅)).
- otherwise two branches [all; none]: e_u + λ·(e_c − e_u), λ = image_scale in image mode (6), else
  text_scale (DynamiCrafter 7.5, VideoCrafter1 I2V 12).
`guidance_rescale` φ > 0 then mixes in the guided output rescaled to the fully conditioned branch's
standard deviation (per sample, over all non-batch axes): φ·g·std(e_c)/std(g) + (1 − φ)·g, as the
DynamiCrafter 512/1024 scripts do in v space with φ = 0.7.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from stylecrafter_jax.diffusion.schedule import check_choice
from stylecrafter_jax.errors import ConfigError, ShapeError

GUIDANCE_FORMS = ("official", "paper")
GUIDANCE_MODES = ("video", "image")

ModelFn = Callable[..., jax.Array]


class GuidanceInputs(NamedTuple):
    """Everything a guided step needs besides x and t; the `cond` pytree of `Sampler`.

    params: the model parameters, passed to model_fn as they are.
    text: (B, L_text, C) prompt tokens. empty_text: (B or 1, L_text, C) tokens of the empty prompt "".
    style: (B, n_style, C) style tokens and multipliers: (B, n_cross) style multipliers
    (`style_multipliers`), both None for a model without style.
    image: (B, n_image, C) image tokens and empty_image: (B or 1, n_image, C) those of the empty image,
    both None for a model without image conditioning.
    model_kwargs: None or a dict of per-sample arrays (B, ...) passed to model_fn as keyword arguments.
    """

    params: Any
    text: jax.Array
    empty_text: jax.Array
    style: jax.Array | None = None
    multipliers: jax.Array | None = None
    image: jax.Array | None = None
    empty_image: jax.Array | None = None
    model_kwargs: dict[str, jax.Array] | None = None


class Branch(NamedTuple):
    """Which conditions one guidance branch keeps."""

    text: bool
    image: bool
    style: bool


def style_multipliers(scales: jax.Array, style_weight: float | jax.Array) -> jax.Array:
    """Per-layer style multipliers m = (1 + s)·style_weight from the ScaleEncoder tanh outputs s.

    `scales` is (B, n_cross) or the ScaleEncoder's (B, n_cross, 1); the result is (B, n_cross) float32.
    """
    scales = jnp.asarray(scales)
    if scales.ndim == 3 and scales.shape[-1] == 1:
        scales = scales[..., 0]
    if scales.ndim != 2:
        raise ShapeError(f"style_multipliers: scales has shape {scales.shape}, expected (B, n_cross) "
                         "or (B, n_cross, 1)")
    return (1.0 + scales.astype(jnp.float32)) * jnp.asarray(style_weight, jnp.float32)


def combine_video(e_ts: jax.Array, e_t: jax.Array, e_u: jax.Array, *, text_scale: float, style_scale: float,
                  form: str = "official") -> jax.Array:
    """Combine the three video branches with the official (anchored at e_ts) or paper (at e_u) form."""
    anchor = {"official": e_ts, "paper": e_u}[check_choice("sampling.guidance_form", form, GUIDANCE_FORMS)]
    return anchor + style_scale * (e_ts - e_t) + text_scale * (e_t - e_u)


def combine_image(e_ts: jax.Array, e_u: jax.Array, *, scale: float) -> jax.Array:
    """Plain two-branch guidance e_u + λ·(e_ts − e_u)."""
    return e_u + scale * (e_ts - e_u)


def combine_image_text(e_it: jax.Array, e_i: jax.Array, e_u: jax.Array, *, text_scale: float,
                       image_scale: float) -> jax.Array:
    """DynamiCrafter's multi-condition guidance e(∅,∅) + s_img·(e(I,∅) − e(∅,∅)) + s_txt·(e(I,T) − e(I,∅))."""
    return e_u + image_scale * (e_i - e_u) + text_scale * (e_it - e_i)


def rescale_guidance(guided: jax.Array, conditional: jax.Array, guidance_rescale: float) -> jax.Array:
    """φ·g·std(e_c)/std(g) + (1 − φ)·g, the std per sample over all non-batch axes (Lin et al. 2023, §3.4)."""
    axes = tuple(range(1, guided.ndim))
    ratio = jnp.std(conditional, axis=axes, keepdims=True) / jnp.std(guided, axis=axes, keepdims=True)
    return guidance_rescale * guided * ratio + (1.0 - guidance_rescale) * guided


def guidance_branches(mode: str, *, has_style: bool, has_image: bool,
                      image_cond_scale: float | None) -> tuple[Branch, ...]:
    """The branches of a guided step, the fully conditioned one first (see the module docstring)."""
    everything = Branch(text=True, image=has_image, style=has_style)
    nothing = Branch(text=False, image=False, style=False)
    if mode == "video" and has_style:
        return everything, Branch(text=True, image=has_image, style=False), nothing
    if mode == "video" and has_image and image_cond_scale is not None:
        return everything, Branch(text=False, image=True, style=False), nothing
    return everything, nothing


def make_guided_denoiser(model_fn: ModelFn, *, mode: str = "video", text_scale: float = 15.0,
                         style_scale: float = 7.5, image_scale: float = 6.0, form: str = "official",
                         image_cond_scale: float | None = None, guidance_rescale: float = 0.0,
                         guided: bool = True) -> Callable[[jax.Array, jax.Array, GuidanceInputs], jax.Array]:
    """Wrap model_fn into `denoise(x, t, inputs: GuidanceInputs) -> guided output` for `Sampler`.

    The branches follow from the mode and from which conditions `inputs` carries; `guided=False` gives
    the fully conditioned branch alone (one model call at batch B), for the steps outside a guidance interval.
    """
    check_choice("sampling.mode", mode, GUIDANCE_MODES)
    check_choice("sampling.guidance_form", form, GUIDANCE_FORMS)
    if not 0.0 <= guidance_rescale <= 1.0:
        raise ConfigError(f"sampling.guidance_rescale: got {guidance_rescale!r}, expected a value in [0, 1] "
                          "(0 = off)")

    def denoise(x: jax.Array, t: jax.Array, inputs: GuidanceInputs) -> jax.Array:
        batch = x.shape[0]
        has_style, has_image = _check_inputs(inputs, batch)
        branches = guidance_branches(mode, has_style=has_style, has_image=has_image,
                                     image_cond_scale=image_cond_scale)
        if image_cond_scale is not None and (len(branches) == 2 or has_style):
            raise ConfigError(f"sampling.image_cond_scale: got {image_cond_scale!r}, expected None here: only "
                              "video guidance of an image-conditioned model without style has an image-only branch")
        parts = _run_branches(model_fn, inputs, x, t, branches if guided else branches[:1])
        if not guided:
            return parts[0]
        if len(branches) == 2:
            out = combine_image(*parts, scale=image_scale if mode == "image" else text_scale)
        elif has_style:
            out = combine_video(*parts, text_scale=text_scale, style_scale=style_scale, form=form)
        else:
            out = combine_image_text(*parts, text_scale=text_scale, image_scale=image_cond_scale)
        return rescale_guidance(out, parts[0], guidance_rescale) if guidance_rescale > 0 else out

    return denoise


def _run_branches(model_fn: ModelFn, inputs: GuidanceInputs, x: jax.Array, t: jax.Array,
                  branches: Sequence[Branch]) -> list[jax.Array]:
    """One model call over every branch stacked on the batch axis; the per-branch outputs, float32."""
    batch, n = x.shape[0], len(branches)
    empty_text = jnp.broadcast_to(inputs.empty_text, inputs.text.shape).astype(inputs.text.dtype)
    empty_image = None if inputs.image is None else \
        jnp.broadcast_to(inputs.empty_image, inputs.image.shape).astype(inputs.text.dtype)
    contexts, scales = [], []
    for branch in branches:
        tokens = [inputs.text if branch.text else empty_text]
        if inputs.image is not None:
            tokens.append(inputs.image.astype(inputs.text.dtype) if branch.image else empty_image)
        if inputs.style is not None:
            tokens.append(inputs.style.astype(inputs.text.dtype))
            multipliers = inputs.multipliers.astype(jnp.float32)
            scales.append(multipliers if branch.style else jnp.zeros_like(multipliers))
        contexts.append(jnp.concatenate(tokens, axis=1))
    tile = lambda a: jnp.concatenate([a] * n)  # noqa: E731
    kwargs = {name: tile(value) for name, value in (inputs.model_kwargs or {}).items()}
    out = model_fn(inputs.params, tile(x), tile(t), jnp.concatenate(contexts),
                   jnp.concatenate(scales) if scales else None, **kwargs)
    if out.shape != (n * batch,) + x.shape[1:]:
        raise ShapeError(f"model_fn returned an output of shape {out.shape}, expected "
                         f"{(n * batch,) + x.shape[1:]} ({n} guidance branches of x {x.shape})")
    return jnp.split(out.astype(jnp.float32), n)


def _check_inputs(inputs: GuidanceInputs, batch: int) -> tuple[bool, bool]:
    """Check the shapes of `inputs` against a batch of `batch`; whether it has style and image conditions."""
    text = inputs.text
    if text.ndim != 3 or text.shape[0] != batch:
        raise ShapeError(f"GuidanceInputs.text has shape {text.shape}, expected ({batch}, L_text, C) "
                         "for a batch of x with that many samples")
    _check_empty("empty_text", inputs.empty_text, text, batch)
    if (inputs.style is None) != (inputs.multipliers is None):
        raise ShapeError("GuidanceInputs.style and .multipliers: expected both or neither")
    if (inputs.image is None) != (inputs.empty_image is None):
        raise ShapeError("GuidanceInputs.image and .empty_image: expected both or neither")
    if inputs.style is not None:
        style, multipliers = inputs.style, inputs.multipliers
        if style.ndim != 3 or style.shape[0] != batch or style.shape[2] != text.shape[2]:
            raise ShapeError(f"GuidanceInputs.style has shape {style.shape}, expected ({batch}, n_style, "
                             f"{text.shape[2]}) with the text tokens' width")
        if multipliers.ndim != 2 or multipliers.shape[0] != batch:
            raise ShapeError(f"GuidanceInputs.multipliers has shape {multipliers.shape}, expected ({batch}, n_cross)")
    if inputs.image is not None:
        image = inputs.image
        if image.ndim != 3 or image.shape[0] != batch or image.shape[2] != text.shape[2]:
            raise ShapeError(f"GuidanceInputs.image has shape {image.shape}, expected ({batch}, n_image, "
                             f"{text.shape[2]}) with the text tokens' width")
        _check_empty("empty_image", inputs.empty_image, image, batch)
    for name, value in (inputs.model_kwargs or {}).items():
        if value.ndim < 1 or value.shape[0] != batch:
            raise ShapeError(f"GuidanceInputs.model_kwargs[{name!r}] has shape {value.shape}, expected "
                             f"({batch}, ...), one row per sample")
    return inputs.style is not None, inputs.image is not None


def _check_empty(name: str, empty: jax.Array, full: jax.Array, batch: int) -> None:
    if empty.ndim != 3 or empty.shape[0] not in (1, batch) or empty.shape[1:] != full.shape[1:]:
        raise ShapeError(f"GuidanceInputs.{name} has shape {empty.shape}, expected "
                         f"(1 or {batch}, {full.shape[1]}, {full.shape[2]}) like the conditional tokens")
