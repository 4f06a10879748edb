"""What the commands share: `flag_main` (fresh flags per call, --help, bad input as exit status 2) and loading
a `get_config(arg)` config file by path."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from typing import Any, Callable, Sequence

import ml_collections
from absl import flags

from stylecrafter_jax.errors import ConfigError, StyleCrafterError


def flag_main(argv: Sequence[str] | None, doc: str, define_flags: Callable[[flags.FlagValues, Sequence[str]], None],
              run: Callable[[flags.FlagValues], Any]) -> int:
    """Parse argv (argv[0] is the program name; sys.argv when None) into new FlagValues, call run(flags), return
    the exit status.

    `define_flags(flag_values, argv)` registers the command's flags. `--help` prints `doc` and the flags.
    Unknown flags or config overrides, a `--config` file that is missing or has no get_config, and every
    StyleCrafterError print one `error:` line and give 2.
    """
    argv = sys.argv if argv is None else argv
    fv = flags.FlagValues()
    define_flags(fv, argv)
    if any(arg in ("-h", "--help", "-help") for arg in argv[1:]):
        print(doc + "\nflags:\n" + fv.get_help(include_special_flags=False))
        return 0
    problem = _config_file_problem(argv)  # config_flags would defer it to the first use of the config
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        rest = fv(list(argv))
    except (flags.Error, AttributeError, KeyError) as e:  # config_flags raises these for unknown override keys
        cause = _bad_input_cause(e)  # a config file's own bad-input error, which absl wraps in a traceback
        print(f"error: {cause}" if cause else f"error: bad flag or config override: {e}", file=sys.stderr)
        return 2
    try:
        if len(rest) > 1:
            raise ConfigError(f"unexpected arguments {rest[1:]}")
        run(fv)
    except StyleCrafterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _bad_input_cause(error: BaseException) -> StyleCrafterError | None:
    """The first StyleCrafterError that `error` was raised while handling, if any (absl re-raises it wrapped)."""
    found, cause = None, error.__cause__ or error.__context__
    while cause is not None:
        found = cause if isinstance(cause, StyleCrafterError) else found
        cause = cause.__cause__ or cause.__context__
    return found


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """`get_config(ARG)` of a `PATH.py[:ARG]` config file (".py" may be left out)."""
    path, _, arg = spec.partition(".py:")
    return _config_module(spec, path if path.endswith(".py") else path + ".py").get_config(arg or None)


def _config_module(spec: str, path: str) -> types.ModuleType:
    """The module of config file `path` (given as `spec`); ConfigError if it is missing or has no get_config."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config {spec!r}: no such config file {path!r}")
    module_spec = importlib.util.spec_from_file_location(f"_config_{os.path.basename(path).removesuffix('.py')}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"--config {spec!r}: config file {path!r} has no get_config(arg) function")
    return module


def _config_file_problem(argv: Sequence[str]) -> str | None:
    """Why the `--config` file named in argv cannot be loaded (missing, or without get_config), or None."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    values += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    if not values:
        return None
    try:
        _config_module(values[-1], values[-1].split(":", 1)[0])  # absl config_flags splits at the first ":"
    except ConfigError as e:
        return str(e)
    except Exception:  # the file itself fails: the caller's message says how
        return None
    return None
