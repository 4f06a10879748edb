"""The cached-encoder path: a cache holds what the encoders give, and a run trains on it without them."""

import json
import os

import jax
import numpy as np
import pytest

from configs.stage1 import get_config
from stylecrafter_jax.cache.__main__ import main as cache_main
from stylecrafter_jax.cache.read import cached_arrays, inputs_from_cache
from stylecrafter_jax.cache.write import cache_encoders
from stylecrafter_jax.conditioning.frozen import build_encoders, encode_batch
from stylecrafter_jax.conditioning.tokenizer import load_tokenizer
from stylecrafter_jax.data.iterators import make_iterator
from stylecrafter_jax.errors import DataError
from stylecrafter_jax.parallel.mesh import create_mesh
from stylecrafter_jax.train.base_weights import load_encoder_params
from stylecrafter_jax.train.loop import run

RECORDS = 16


def _config():
    config = get_config("tiny,synthetic")
    config.data.images.synthetic.num_records = RECORDS
    return config


def test_cached_inputs_equal_the_encoders_outputs_with_the_same_key():
    config = _config()
    encoders = build_encoders(config.model)
    params = load_encoder_params(config, create_mesh(config.mesh))
    tokenizer = load_tokenizer(context_length=config.model.text_encoder.context_length)
    batch = next(make_iterator(config.data, process_index=0, process_count=1))
    cached = {name: fn(batch) for name, fn in cache_encoders(config, encoders, params, tokenizer).items()}
    assert sorted(cached) == ["image_tokens", "latent_moments", "text_context"]
    assert cached["latent_moments"].shape == (8, 1, 8, 8, 8)  # mean and log-variance of 4 channels

    key = jax.random.PRNGKey(3)
    expected = encode_batch(encoders, params, tokenizer(list(batch["caption"])), batch["style"],
                            batch["image"][:, None], key)
    got = inputs_from_cache(jax.tree.map(np.asarray, cached), key)
    # Image tokens are rounded through float16 (as the reference does): one float16 step apart at most.
    for name, atol in (("latents", 1e-5), ("text_context", 1e-5), ("image_tokens", 5e-4)):
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(expected[name]), rtol=1e-5, atol=atol,
                                   err_msg=name)
    # The latents are a fresh posterior sample per key, as the reference trains.
    other = inputs_from_cache(jax.tree.map(np.asarray, cached), jax.random.PRNGKey(4))["latents"]
    assert float(np.abs(np.asarray(other) - np.asarray(got["latents"])).max()) > 1e-3


def test_a_cache_of_a_pixel_model_does_not_feed_a_vae_model():
    raw = {"latents": np.zeros((2, 1, 4, 4, 3)), "text_context": np.zeros((2, 77, 8)),
           "image_tokens": np.zeros((2, 5, 8)), "caption": np.array(["a", "b"], dtype=object)}
    with pytest.raises(DataError, match="latent_moments"):
        cached_arrays(raw, "vae")
    assert sorted(cached_arrays(raw, "pixels")) == ["image_tokens", "latents", "text_context"]


@pytest.mark.slow  # minutes on 2 cores: pytest -m slow tests
def test_cache_command_then_training_on_the_cache(tmp_path, capsys):
    out = str(tmp_path / "cache")
    argv = ["cache", "--config=configs/stage1.py:tiny,synthetic", f"--out={out}", "--epochs=2",
            f"--config.data.images.synthetic.num_records={RECORDS}"]
    assert cache_main(argv) == 0
    assert f"cached {2 * RECORDS} images records" in capsys.readouterr().out
    assert cache_main(argv) == 2  # the cache exists: refused without --overwrite

    config = _config()
    with config.unlocked():
        config.data.kind = "cached"
        config.data.cached.data_dir = out
        config.workdir = str(tmp_path / "run")
        config.train.update(steps=2, log_every=1, checkpoint_every=2, async_checkpoint=False)
    lines = []
    result = run(config, log=lines.append)
    assert result.step == 2
    assert any("step on images (8, 1, 8, 8, 4)" in line for line in lines), lines
    with open(os.path.join(config.workdir, "metrics.jsonl")) as f:
        losses = [json.loads(line)["loss"] for line in f if '"loss"' in line]
    assert len(losses) == 2 and all(np.isfinite(losses)) and all(loss > 0 for loss in losses)


def test_cache_of_a_mixed_config_needs_a_kind(tmp_path, capsys):
    argv = ["cache", "--config=configs/stage2.py:tiny,synthetic", f"--out={tmp_path}"]
    assert cache_main(argv) == 2
    assert "kind 'mixed' (--kind, or the config's data.kind): expected 'images' or 'videos'" in capsys.readouterr().err
