"""Tests of the shared absl-flag `main`: help, exit statuses, fresh flags on every call."""

from absl import flags

from stylecrafter_jax.cli import flag_main
from stylecrafter_jax.errors import DataError


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
