"""The one parser of config file args (`--config=FILE.py:ARG`): comma-separated words, e.g. "tiny,synthetic"."""

from __future__ import annotations

import ml_collections

from stylecrafter_jax.errors import ConfigError


def parse_arg(arg: str | None, **fields: bool | tuple[str, ...]) -> ml_collections.ConfigDict:
    """The fields of `arg`, locked: a bool field (default False) is switched on by its name, a choice field
    (a tuple of options, the first the default) is set by one of its options; `name=value` sets either.

    Unknown words, a choice given twice and a value outside its options are ConfigErrors naming the arg.
    """
    choices = {name: options for name, options in fields.items() if isinstance(options, tuple)}
    values = {name: (options[0] if name in choices else False) for name, options in fields.items()}
    given: dict[str, str] = {}
    words = [w.strip() for w in (arg or "").split(",") if w.strip()]
    unknown = [w for w in words if _field(w, choices)[0] not in fields]
    if unknown:
        raise ConfigError(f"config arg {arg!r}: unknown words {unknown}; expected {_expected(fields)}")
    for word in words:
        name, value = _field(word, choices)
        if name in given:
            raise ConfigError(f"config arg {arg!r}: {name} given twice ({given[name]!r}, {value!r})")
        given[name] = value
        values[name] = _value(arg, name, value, fields[name])
    config = ml_collections.ConfigDict(values)
    config.lock()
    return config


def _field(word: str, choices: dict[str, tuple[str, ...]]) -> tuple[str, str]:
    """(field name, value) of one word: `name=value`, an option of a choice field, or a bool field's name."""
    name, _, value = word.partition("=")
    if value:
        return name, value
    owners = [n for n, options in choices.items() if word in options]
    return (owners[0], word) if owners else (word, "true")


def _value(arg: str | None, name: str, value: str, options: bool | tuple[str, ...]) -> bool | str:
    if isinstance(options, tuple):
        if value not in options:
            raise ConfigError(f"config arg {arg!r}: {name} {value!r}; expected one of {options}")
        return value
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"config arg {arg!r}: {name}={value!r}; expected true or false")
    return value.lower() == "true"


def _expected(fields: dict[str, bool | tuple[str, ...]]) -> str:
    return ", ".join(f"{name} of {options}" if isinstance(options, tuple) else repr(name)
                     for name, options in fields.items())
