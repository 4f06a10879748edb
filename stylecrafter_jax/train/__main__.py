"""python -m stylecrafter_jax.train --config=configs/stage1.py [--config.train.steps=...]; a config with a
`toy` section (configs/toy.py) runs the whole toy pipeline."""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from stylecrafter_jax.train.loop import run
from stylecrafter_jax.train.toy import run_toy

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file with get_config(arg), e.g. configs/stage2.py")


def main(argv: list[str]) -> None:
    """Run the configured training."""
    del argv
    config = _CONFIG.value
    if "toy" in config:
        run_toy(config)
    else:
        run(config)


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main, argv=sys.argv)
