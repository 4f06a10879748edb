"""The shared `main` of the absl-flag commands: fresh flags per call, --help, and bad input as exit status 2."""

from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

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
