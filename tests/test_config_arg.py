"""The one parser of config file args: bool and choice fields, `name=value`, and one error per bad arg."""

import pytest

from stylecrafter_jax.config_arg import parse_arg
from stylecrafter_jax.errors import ConfigError

FIELDS = dict(size=("full", "medium", "tiny"), synthetic=False)


def test_words_set_fields_and_the_rest_keep_their_defaults():
    assert parse_arg(None, **FIELDS).to_dict() == {"size": "full", "synthetic": False}
    assert parse_arg("tiny,synthetic", **FIELDS).to_dict() == {"size": "tiny", "synthetic": True}
    assert parse_arg("synthetic=false, size=medium", **FIELDS).to_dict() == {"size": "medium", "synthetic": False}
    with pytest.raises(AttributeError):
        parse_arg("tiny", **FIELDS).seed = 1  # locked: no new keys


@pytest.mark.parametrize("arg, message", [
    ("tiny,huge,x", r"config arg 'tiny,huge,x': unknown words \['huge', 'x'\]; expected size of \('full', "),
    ("tiny,medium", r"config arg 'tiny,medium': size given twice \('tiny', 'medium'\)"),
    ("size=huge", r"config arg 'size=huge': size 'huge'; expected one of \('full', 'medium', 'tiny'\)"),
    ("synthetic=maybe", r"config arg 'synthetic=maybe': synthetic='maybe'; expected true or false"),
])
def test_bad_args_are_config_errors_naming_the_arg(arg, message):
    with pytest.raises(ConfigError, match=message):
        parse_arg(arg, **FIELDS)
