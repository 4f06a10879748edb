"""The train step: gradients of the trainable subtree only, the multi_transform update, EMA, NaN guard."""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from stylecrafter_jax.train.loss import LossModels, diffusion_loss
from stylecrafter_jax.train.masks import FROZEN
from stylecrafter_jax.train.state import TrainState, merge, select, trainable


def train_step(state: TrainState, batch: dict[str, jax.Array], *, models: LossModels,
               tx: optax.GradientTransformation, labels: dict, train: ml_collections.ConfigDict,
               temporal_mode: str) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step. A non-finite loss or gradient leaves the state unchanged and is reported in
    `metrics['finite']`, so the host can stop the run at that step with nothing corrupted."""
    rng, key = jax.random.split(state.rng)
    frozen = select(state.params, labels, FROZEN)

    def loss_of(trained):
        return diffusion_loss(merge(trained, frozen), batch, key, models, train, temporal_mode)

    (loss, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable(state.params, labels))
    grad_norm = optax.global_norm(grads)
    full_grads = merge(grads, jax.tree.map(jnp.zeros_like, frozen))
    updates, opt_state = tx.update(full_grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema
    if ema is not None:
        decay = train.ema_decay
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, trainable(params, labels))

    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    new_state = TrainState(
        step=state.step + finite.astype(state.step.dtype),
        params=merge(keep(trainable(params, labels), trainable(state.params, labels)), frozen),
        opt_state=keep(opt_state, state.opt_state),
        ema=None if ema is None else keep(ema, state.ema),
        rng=rng,
    )
    metrics = {"loss": loss, "grad_norm": grad_norm, "finite": finite, **aux}
    return new_state, metrics


def compile_step(step_fn: Callable[..., Any], abstract_state: Any, abstract_batch: Any, *, state_shardings: Any,
                 batch_shardings: Any, log: Callable[[str], None] = print, name: str = "train step"
                 ) -> tuple[Callable[..., Any], float]:
    """AOT-compile `step_fn(state, batch)` with in/out shardings and the state donated.

    Returns the compiled function and the compiled step's FLOPs from XLA's cost analysis (0 where the
    lowering has none: an ahead-of-time compile for devices that are not attached).
    """
    jitted = jax.jit(step_fn, in_shardings=(state_shardings, batch_shardings), out_shardings=(state_shardings, None),
                     donate_argnums=0)
    start = time.perf_counter()
    lowered = jitted.lower(abstract_state, abstract_batch)
    compiled = lowered.compile()
    log(f"compiled {name} in {time.perf_counter() - start:.1f} s")
    return compiled, float((lowered.cost_analysis() or {}).get("flops", 0.0))


def make_step_fn(models: LossModels, tx: optax.GradientTransformation, labels: dict,
                 train: ml_collections.ConfigDict, temporal_mode: str) -> Callable[..., Any]:
    """`train_step` with everything but (state, batch) bound."""
    return functools.partial(train_step, models=models, tx=tx, labels=labels, train=train,
                             temporal_mode=temporal_mode)
