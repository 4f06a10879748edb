"""Tests of the shared absl-flag `main`: help, exit statuses, fresh flags on every call."""

import pytest
from absl import flags
from ml_collections import config_flags

from stylecrafter_jax.cli import flag_main, load_config_file
from stylecrafter_jax.errors import ConfigError, DataError


def define(fv, argv):
    flags.DEFINE_string("name", None, "A name.", flag_values=fv)


def test_run_gets_the_parsed_flags_and_each_call_starts_fresh(capsys):
    seen = []
    assert flag_main(["prog", "--name=a"], "doc", define, lambda fv: seen.append(fv.name)) == 0
    assert flag_main(["prog"], "doc", define, lambda fv: seen.append(fv.name)) == 0
    assert seen == ["a", None]


def test_help_prints_the_doc_and_flags(capsys):
    assert flag_main(["prog", "--help"], "The doc line.", define, lambda fv: 1 / 0) == 0
    out = capsys.readouterr().out
    assert out.startswith("The doc line.") and "--name" in out


def test_bad_input_gives_status_2_with_one_error_line(capsys):
    def fail(fv):
        raise DataError("style image 'x.png' does not exist")

    assert flag_main(["prog"], "doc", define, fail) == 2
    assert capsys.readouterr().err == "error: style image 'x.png' does not exist\n"
    assert flag_main(["prog", "--nmae=a"], "doc", define, lambda fv: None) == 2
    assert "bad flag" in capsys.readouterr().err
    assert flag_main(["prog", "stray"], "doc", define, lambda fv: None) == 2
    assert "unexpected arguments ['stray']" in capsys.readouterr().err


def define_config(fv, argv):
    config_flags.DEFINE_config_file("config", None, "A config file.", flag_values=fv, sys_argv=list(argv))


def test_a_missing_config_file_or_one_without_get_config_is_one_line_naming_the_file(tmp_path, capsys):
    missing, bare = tmp_path / "missing.py", tmp_path / "bare.py"
    bare.write_text("SETTING = 1\n")
    for argv in (["prog", f"--config={missing}"], ["prog", "--config", f"{missing}:tiny"]):
        assert flag_main(argv, "doc", define_config, lambda fv: None) == 2
        spec = argv[-1].removeprefix("--config=")
        assert capsys.readouterr().err == f"error: --config {spec!r}: no such config file {str(missing)!r}\n"
    assert flag_main(["prog", f"--config={bare}"], "doc", define_config, lambda fv: None) == 2
    assert capsys.readouterr().err == (f"error: --config {str(bare)!r}: config file {str(bare)!r} has no "
                                       "get_config(arg) function\n")
    for spec, message in ((str(missing), "no such config file"), (f"{bare}:tiny", r"has no get_config\(arg\) function")):
        with pytest.raises(ConfigError, match=message):
            load_config_file(spec)
