"""Multi-condition classifier-free guidance (text and style), every branch of a step in one model call.

The wrapped model function has the contract
    eps = model_fn(params, x, t, context, style_scales)
with x (N, ...) latents, t (N,) int timesteps, context (N, L_text + n_style, C) text tokens followed
by style tokens, and style_scales (N, n_cross) multipliers of the style branch of each cross-attention
layer. A multiplier of 0 switches the style branch off, which equals the official "no style tokens"
call because that branch is purely additive; so all branches share one token count and stack on the
batch axis.

Video (three branches, batch order [e_ts; e_t; e_u]):
    e_ts = (text + style, m), e_t = (text, 0), e_u = (empty text, 0)
    official (released code): e_ts + λs·(e_ts − e_t) + λt·(e_t − e_u)     λt = 15, λs = 7.5
    paper (anchored at e_u):  e_u  + λs·(e_ts − e_t) + λt·(e_t − e_u)
Image (two branches, [e_ts; e_u], the uncond branch drops text and style): e_u + λ·(e_ts − e_u), λ = 6.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from stylecrafter_jax.errors import ConfigError, ShapeError

GUIDANCE_FORMS = ("official", "paper")
GUIDANCE_MODES = ("video", "image")

ModelFn = Callable[[Any, jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


class GuidanceInputs(NamedTuple):
    """Everything a guided step needs besides x and t; the `cond` pytree of `DDIMSampler`.

    params: the model parameters, passed to model_fn as they are.
    text: (B, L_text, C) prompt tokens. empty_text: (B or 1, L_text, C) tokens of the empty prompt "".
    style: (B, n_style, C) style tokens. multipliers: (B, n_cross) style multipliers (`style_multipliers`).
    """

    params: Any
    text: jax.Array
    empty_text: jax.Array
    style: jax.Array
    multipliers: jax.Array


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
    anchor = {"official": e_ts, "paper": e_u}[_check_choice("sampling.guidance_form", form, GUIDANCE_FORMS)]
    return anchor + style_scale * (e_ts - e_t) + text_scale * (e_t - e_u)


def combine_image(e_ts: jax.Array, e_u: jax.Array, *, scale: float) -> jax.Array:
    """Plain two-branch guidance e_u + λ·(e_ts − e_u)."""
    return e_u + scale * (e_ts - e_u)


def make_guided_denoiser(model_fn: ModelFn, *, mode: str = "video", text_scale: float = 15.0,
                         style_scale: float = 7.5, image_scale: float = 6.0,
                         form: str = "official") -> Callable[[jax.Array, jax.Array, GuidanceInputs], jax.Array]:
    """Wrap model_fn into `denoise(x, t, inputs: GuidanceInputs) -> guided eps` for `DDIMSampler`.

    Video mode uses text_scale, style_scale and form; image mode uses image_scale only.
    """
    _check_choice("sampling.mode", mode, GUIDANCE_MODES)
    _check_choice("sampling.guidance_form", form, GUIDANCE_FORMS)

    def denoise(x: jax.Array, t: jax.Array, inputs: GuidanceInputs) -> jax.Array:
        batch = x.shape[0]
        cond_context, uncond_context, multipliers = _contexts(inputs, batch)
        no_style = jnp.zeros_like(multipliers)
        if mode == "video":
            contexts = [cond_context, cond_context, uncond_context]
            scales = [multipliers, no_style, no_style]
        else:
            contexts = [cond_context, uncond_context]
            scales = [multipliers, no_style]
        branches = len(contexts)
        eps = model_fn(inputs.params, jnp.concatenate([x] * branches), jnp.concatenate([t] * branches),
                       jnp.concatenate(contexts), jnp.concatenate(scales))
        if eps.shape != (branches * batch,) + x.shape[1:]:
            raise ShapeError(f"model_fn returned eps of shape {eps.shape}, expected "
                             f"{(branches * batch,) + x.shape[1:]} ({branches} guidance branches of x {x.shape})")
        parts = jnp.split(eps.astype(jnp.float32), branches)
        if mode == "video":
            return combine_video(*parts, text_scale=text_scale, style_scale=style_scale, form=form)
        return combine_image(*parts, scale=image_scale)

    return denoise


def _contexts(inputs: GuidanceInputs, batch: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Check the shapes of `inputs` against a batch of `batch` and build the cond/uncond contexts."""
    text, style, multipliers = inputs.text, inputs.style, inputs.multipliers
    if text.ndim != 3 or text.shape[0] != batch:
        raise ShapeError(f"GuidanceInputs.text has shape {text.shape}, expected ({batch}, L_text, C) "
                         "for a batch of x with that many samples")
    if inputs.empty_text.ndim != 3 or inputs.empty_text.shape[0] not in (1, batch) \
            or inputs.empty_text.shape[1:] != text.shape[1:]:
        raise ShapeError(f"GuidanceInputs.empty_text has shape {inputs.empty_text.shape}, expected "
                         f"(1 or {batch}, {text.shape[1]}, {text.shape[2]}) like the prompt tokens")
    if style.ndim != 3 or style.shape[0] != batch or style.shape[2] != text.shape[2]:
        raise ShapeError(f"GuidanceInputs.style has shape {style.shape}, expected ({batch}, n_style, "
                         f"{text.shape[2]}) with the text tokens' width")
    if multipliers.ndim != 2 or multipliers.shape[0] != batch:
        raise ShapeError(f"GuidanceInputs.multipliers has shape {multipliers.shape}, expected ({batch}, n_cross)")
    empty_text = jnp.broadcast_to(inputs.empty_text, text.shape).astype(text.dtype)
    style = style.astype(text.dtype)
    return (jnp.concatenate([text, style], axis=1), jnp.concatenate([empty_text, style], axis=1),
            multipliers.astype(jnp.float32))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return value if it is one of choices, else raise a ConfigError naming the setting."""
    if value not in choices:
        raise ConfigError(f"{name}: got {value!r}, expected one of {choices}")
    return value
