"""Caption rules: the reference regexes reproduced, the fixed rules' outputs, and the before/after tool."""

import pytest

from stylecrafter_jax.data.captions import FIXED_RULES, REFERENCE_RULES, clean_caption, main

# caption, reference output (untidied, as the reference leaves it), fixed output
TABLE = [
    ("a watercolor painting of a fox in the snow", "a fox in the snow", "a fox in the snow"),
    ("a cat in a digital art style", "a cat style", "a cat style"),
    ("a photo of a painting of a dog", "a dog", "a dog"),
    ("an oil painting of a lighthouse", "a lighthouse", "a lighthouse"),
    ("painting - a bowl of fruit", "a bowl of fruit", "a bowl of fruit"),
    ("portrait of a woman in a black and white photo", "a woman ", "a woman"),
    ("a fox in the snow, in a watercolor painting", "a fox in the snow, ", "a fox in the snow"),
    ("A painting of a cat", "a cat", "a cat"),
    ("a Painting of a cat", "a Painting of a cat", "a Painting of a cat"),  # nouns are case-sensitive
    # over-deleted by the reference, kept by the fixed rules:
    ("a dog in the park with a nice view", "a dog ", "a dog in the park with a nice view"),
    ("a mountain landscape painting", "a mounta", "a mountain landscape painting"),
    ("a man in a photography studio", "a man graphy studio", "a man in a photography studio"),
    ("a man with a view of the sea", "the sea", "a man with a view of the sea"),
    ("a woman sitting in front of a picture", "a woman sitting ", "a woman sitting in front of a picture"),
    # "in the style of ..." is removed by the fixed rules only:
    ("a fox in the style of claude monet", "a fox in the style of claude monet", "a fox"),
    ("a fox in the snow in the style of van gogh, at night", "a fox in the snow in the style of van gogh, at night",
     "a fox in the snow, at night"),
]


@pytest.mark.parametrize("caption,reference,fixed", TABLE)
def test_reference_rules(caption, reference, fixed):
    assert clean_caption(caption, REFERENCE_RULES, tidy=False) == reference


@pytest.mark.parametrize("caption,reference,fixed", TABLE)
def test_fixed_rules(caption, reference, fixed):
    assert clean_caption(caption, FIXED_RULES) == fixed


def test_tidy_collapses_spaces_and_edge_commas():
    assert clean_caption(" a  cat ,", (), tidy=True) == "a cat"
    assert clean_caption(" a  cat ,", (), tidy=False) == " a  cat ,"


def test_tool_prints_before_and_after(tmp_path, capsys):
    file = tmp_path / "captions.csv"
    file.write_text("path,caption\na.jpg,a watercolor painting of a fox\nb.jpg,a dog on grass\n")
    main([str(file), "--changed-only"])
    out = capsys.readouterr().out
    assert "'a watercolor painting of a fox'\n  -> 'a fox'" in out
    assert "a dog on grass" not in out
    assert "1 of 2 captions changed" in out
    main([str(file), "--rules", "reference"])
    assert "2 captions" in capsys.readouterr().out
