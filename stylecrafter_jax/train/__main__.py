"""python -m stylecrafter_jax.train --config=configs/stage1.py [--config.train.steps=...]; a config with a
`toy` section (configs/toy.py) runs the whole toy pipeline. Bad input prints one `error:` line (exit 2)."""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags
from ml_collections import config_flags

from stylecrafter_jax.cli import flag_main
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.toy.pipeline import run_toy
from stylecrafter_jax.train.loop import run


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The --config flag (a config file with get_config(arg), e.g. configs/stage2.py) and its overrides."""
    config_flags.DEFINE_config_file("config", None, "Config file with get_config(arg), e.g. configs/stage2.py",
                                    flag_values=flag_values, sys_argv=list(argv))


def train(flag_values: flags.FlagValues) -> None:
    """Run the configured training."""
    config = flag_values.config
    if config is None:
        raise ConfigError("--config is required, e.g. --config=configs/stage1.py:tiny,synthetic")
    if "toy" in config:
        run_toy(config)
    else:
        run(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv (argv[0] is the program name; sys.argv when None), train, and return the exit status (2 on bad input)."""
    return flag_main(argv, __doc__, define_flags, train)


if __name__ == "__main__":
    sys.exit(main())
