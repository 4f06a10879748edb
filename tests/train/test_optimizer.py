"""Learning-rate schedules and the stage-masked optimizer."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from stylecrafter_jax.defaults import train_config
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.train.step import learning_rate_schedule, make_optimizer


def _train(**overrides) -> ml_collections.ConfigDict:
    train = train_config()
    train.update({"learning_rate": 1e-4, **overrides})
    return train


def test_constant_and_warmup():
    assert float(learning_rate_schedule(_train(schedule="constant"))(1234)) == pytest.approx(1e-4)
    warmup = learning_rate_schedule(_train(schedule="warmup", warmup_steps=10))
    assert [float(warmup(s)) for s in (0, 5, 10, 100)] == pytest.approx([0.0, 5e-5, 1e-4, 1e-4])


def test_linear_decay_is_the_reference_lambda_scheduler():
    # 1.0 -> final_decay_ratio linearly over decay_steps ticks of decay_every steps, then flat.
    decay = learning_rate_schedule(_train(schedule="linear_decay", decay_steps=100, decay_every=10,
                                          final_decay_ratio=0.01))
    assert float(decay(0)) == pytest.approx(1e-4)
    assert float(decay(509)) == pytest.approx(1e-4 * (1 - 0.99 * 50 / 100))
    assert float(decay(1000)) == pytest.approx(1e-6, rel=1e-5) and float(decay(5000)) == pytest.approx(1e-6, rel=1e-5)


def test_unknown_schedule_is_an_error():
    with pytest.raises(ConfigError, match="train.schedule 'cosine'"):
        learning_rate_schedule(_train(schedule="cosine"))


def test_frozen_leaves_get_no_state_and_no_update():
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    tx = make_optimizer(_train(learning_rate=0.1, grad_clip=0.0), {"a": "train", "b": "frozen"})
    state = tx.init(params)
    leaves = [leaf for leaf in jax.tree.leaves(state) if np.ndim(leaf) > 0]
    assert all(leaf.shape == (3,) for leaf in leaves) and len(leaves) == 2  # Adam mu, nu of "a" only
    updates, _ = tx.update({"a": jnp.ones(3), "b": jnp.ones(2)}, state, params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(new["b"], params["b"])
    assert float(new["a"][0]) < 1.0
