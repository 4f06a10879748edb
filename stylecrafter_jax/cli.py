"""What the commands share: `flag_main` (fresh flags per call, --help, bad input as exit status 2) and loading
a `get_config(arg)` config file by path."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Callable, Sequence

import ml_collections
from absl import flags

from stylecrafter_jax.errors import ConfigError, StyleCrafterError


def flag_main(argv: Sequence[str], doc: str, define_flags: Callable[[flags.FlagValues, Sequence[str]], None],
              run: Callable[[flags.FlagValues], Any]) -> int:
    """Parse argv (argv[0] is the program name) into new FlagValues, call run(flags), return the exit status.

    `define_flags(flag_values, argv)` registers the command's flags. `--help` prints `doc` and the flags.
    Unknown flags or config overrides and every StyleCrafterError print one `error:` line and give 2.
    """
    fv = flags.FlagValues()
    define_flags(fv, argv)
    if any(arg in ("-h", "--help", "-help") for arg in argv[1:]):
        print(doc + "\nflags:\n" + fv.get_help(include_special_flags=False))
        return 0
    try:
        rest = fv(list(argv))
    except (flags.Error, AttributeError, KeyError) as e:  # config_flags raises these for unknown override keys
        print(f"error: bad flag or config override: {e}", file=sys.stderr)
        return 2
    try:
        if len(rest) > 1:
            raise ConfigError(f"unexpected arguments {rest[1:]}")
        run(fv)
    except StyleCrafterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """`get_config(ARG)` of a `PATH.py[:ARG]` config file (".py" may be left out)."""
    path, _, arg = spec.partition(".py:")
    path = path if path.endswith(".py") else path + ".py"
    if not os.path.isfile(path):
        raise ConfigError(f"--config {spec!r}: no such config file {path!r}")
    module_spec = importlib.util.spec_from_file_location(f"_config_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
