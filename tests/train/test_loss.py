"""The loss's pieces: timestep sampling, per-example weights, condition-dropout bands."""

import jax
import ml_collections
import numpy as np
import pytest

from stylecrafter_jax.diffusion.schedule import make_schedule
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.train.step import dropout_masks, loss_weights, sample_timesteps


def _train(**values):
    base = dict(timestep_sampling="uniform", high_noise_power=2.0, drop_text=0.0, drop_style=0.0, drop_both=0.0)
    return ml_collections.ConfigDict({**base, **values})


def test_v_weights_are_one_over_alpha_bar_and_the_cap_bounds_them():
    schedule = make_schedule()
    t = np.array([0, 500, 999])
    np.testing.assert_array_equal(np.asarray(loss_weights(schedule, t, "uniform")), [1.0, 1.0, 1.0])
    v = np.asarray(loss_weights(schedule, t, "v"))
    np.testing.assert_allclose(v, 1.0 / schedule.alphas_cumprod[t], rtol=1e-6)
    assert v[-1] > 200  # 1 / 0.00466 at t = 999
    capped = np.asarray(loss_weights(schedule, t, "v", cap=100.0))
    np.testing.assert_allclose(capped, [v[0], v[1], 100.0], rtol=1e-6)
    with pytest.raises(ConfigError, match="loss_weighting 'snr'"):
        loss_weights(schedule, t, "snr")
    with pytest.raises(ConfigError, match="loss_weight_cap -1"):
        loss_weights(schedule, t, "v", cap=-1.0)


def test_high_noise_sampling_has_density_proportional_to_t():
    key = jax.random.PRNGKey(0)
    uniform = np.asarray(sample_timesteps(key, (20000,), _train(), 1000))
    high = np.asarray(sample_timesteps(key, (20000,), _train(timestep_sampling="high_noise"), 1000))
    assert uniform.min() >= 0 and uniform.max() <= 999 and high.min() >= 0 and high.max() <= 999
    assert abs(uniform.mean() - 499.5) < 10
    assert abs(high.mean() - 666.0) < 10  # E[1000·u^(1/2)] = 2000/3
    with pytest.raises(ConfigError, match="timestep_sampling 'low'"):
        sample_timesteps(key, (4,), _train(timestep_sampling="low"), 1000)


def test_dropout_bands_have_their_configured_fractions():
    drop_text, drop_style = dropout_masks(jax.random.PRNGKey(1), 20000,
                                          _train(drop_text=0.1, drop_both=0.05, drop_style=0.2))
    drop_text, drop_style = np.asarray(drop_text), np.asarray(drop_style)
    assert abs(np.mean(drop_text & ~drop_style) - 0.1) < 0.01
    assert abs(np.mean(drop_text & drop_style) - 0.05) < 0.01
    assert abs(np.mean(drop_style & ~drop_text) - 0.2) < 0.01
