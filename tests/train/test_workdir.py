"""The work directory's record of the base weights: a resume on other base weights is refused naming both,
and full-size training without converted base weights is refused unless asked for."""

import pytest

from configs.stage1 import get_config
from stylecrafter_jax.checkpoints.pretrained import write_manifest
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.train.__main__ import main
from stylecrafter_jax.train.workdir import base_weights_id, check_base_weights


def _config(workdir, pretrained="", size="tiny,synthetic"):
    config = get_config(size)
    with config.unlocked():
        config.workdir, config.pretrained = str(workdir), str(pretrained)
    return config


def _converted(directory, step):
    directory.mkdir()
    write_manifest(str(directory), {"source": "test", "step": step}, {})
    return directory


def test_resume_on_other_base_weights_is_refused_naming_both(tmp_path):
    first, second = _converted(tmp_path / "a", 1), _converted(tmp_path / "b", 2)
    check_base_weights(_config(tmp_path / "run", first), write=True)
    check_base_weights(_config(tmp_path / "run", first), write=True)  # the same base resumes
    with pytest.raises(ConfigError) as refused:
        check_base_weights(_config(tmp_path / "run", second), write=True)
    message = str(refused.value)
    assert base_weights_id(_config(tmp_path, first)) in message and base_weights_id(_config(tmp_path, second)) in message
    assert str(first) in message and str(second) in message
    with pytest.raises(ConfigError, match="not on random"):
        check_base_weights(_config(tmp_path / "run"), write=True)


def test_random_base_is_recorded_and_a_converted_one_is_refused_after_it(tmp_path):
    converted = _converted(tmp_path / "a", 1)
    check_base_weights(_config(tmp_path / "run"), write=True)
    assert base_weights_id(_config(tmp_path / "run")) == "random"
    with pytest.raises(ConfigError, match="trained on the base weights random, not on .*manifest sha256 [0-9a-f]{64}"):
        check_base_weights(_config(tmp_path / "run", converted), write=True)


def test_full_size_training_without_pretrained_is_refused_unless_allowed(tmp_path, capsys):
    config = _config(tmp_path / "full", size="full")
    with pytest.raises(ConfigError, match="--config.allow_random_base=True"):
        check_base_weights(config, write=False)
    config.allow_random_base = True
    check_base_weights(config, write=False)
    assert main(["train", "--config=configs/stage1.py", f"--config.workdir={tmp_path / 'cli'}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: full-size training needs --config.pretrained"), lines
