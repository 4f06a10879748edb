"""CLIP tokenizer: ids equal open_clip's on awkward text, padding, truncation with one warning, loading, pickling, errors."""

import importlib.util
import os
import pickle
import warnings

import numpy as np
import pytest

from stylecrafter_jax.conditioning import tokenizer as tokenizer_module
from stylecrafter_jax.conditioning.tokenizer import load_tokenizer, open_clip_bpe_path, write_hf_vocab
from stylecrafter_jax.errors import ConfigError

TEXTS = [
    "a photo of a cat",
    "",
    "Hello, World!!! (test) #1 -- ok? [brackets] {braces} a/b\\c @user 50% $9.99",
    "“curly” ‘quotes’ don’t stop — dashes… and ellipses",
    "café naïve façade Ümlaut 東京タワー 서울 Москва ✨🎨 emoji",
    "&amp;lt;b&amp;gt; html &quot;entities&quot; &#39;x&#39;",
    "mojibake: CafÃ© donâ€™t",
    "   lots   of\twhitespace\n\n and   LINES  ",
    "it's we're they've I'm you'll he'd CAN'T",
    "numbers 1234567 3.14159 1e-5 2nd 3rd",
    "A watercolor painting of a fox in a snowy forest, in the style of Hokusai",
    " ".join(["long", "prompt"] * 60),
    "non\u00a0breaking\u2003spaces\u200bzero\u200dwidth\u3000ideographic",
    "İstanbul STRASSE straße ǅ ﬁne ＦＵＬＬＷＩＤＴＨ e\u0301 combining",
    "digits ٣٤ ½ ² Ⅻ and symbols ™®© ±×÷ ←→ ♪ 🏳️‍🌈 👩🏽‍🎨",
    "tabs\tand\r\nnewlines\x0bvertical\x0cfeed \x85next line",
    "'s 'S 'LL don't''t ''' \"quoted\" `backtick` ''''",
    "<|startoftext|> literal <|endoftext|> tags",
]


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    """open_clip's own SimpleTokenizer, loaded from its module file (open_clip itself cannot be imported here)."""
    path = os.path.join(os.path.dirname(open_clip_bpe_path()), "tokenizer.py")
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_ids_equal_open_clip(tokenizer, open_clip_tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = tokenizer(TEXTS)
    reference = open_clip_tokenizer(TEXTS).numpy()
    assert ours.shape == (len(TEXTS), 77) and ours.dtype == np.int32
    for text, row, expected in zip(TEXTS, ours, reference):
        np.testing.assert_array_equal(row, expected, err_msg=repr(text))


def test_known_ids_zero_padding_and_empty_prompt(tokenizer):
    ids = tokenizer(["a photo of a cat", ""])
    np.testing.assert_array_equal(ids[0, :8], [49406, 320, 1125, 539, 320, 2368, 49407, 0])
    np.testing.assert_array_equal(ids[1], [49406, 49407] + [0] * 75)
    np.testing.assert_array_equal(tokenizer("a photo of a cat"), ids[:1])


def test_long_prompts_are_truncated_keeping_eot_with_one_warning(tokenizer):
    long_text = " ".join(["word"] * 100)
    with pytest.warns(UserWarning, match="2 prompt") as record:
        ids = tokenizer([long_text, "short", long_text + " more"])
    assert len(record) == 1
    assert ids[0, 0] == 49406 and ids[0, 76] == 49407 and np.all(ids[0, 1:76] == ids[0, 1])
    assert ids[1, 2] == 49407 and np.all(ids[1, 3:] == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenizer(["x " * 75])  # exactly 77 tokens with SOT and EOT: no truncation, no warning


def test_loads_from_a_hugging_face_tokenizer_directory(tokenizer, tmp_path):
    write_hf_vocab(tokenizer.vocabulary, str(tmp_path))
    from_dir = load_tokenizer(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(from_dir(TEXTS), tokenizer(TEXTS))


def test_pickled_tokenizer_gives_the_same_ids(tokenizer):
    copy = pickle.loads(pickle.dumps(tokenizer))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(copy(TEXTS), tokenizer(TEXTS))
    assert copy.context_length == tokenizer.context_length


def test_missing_vocabulary_is_a_clear_error(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="tokenizer directory"):
        load_tokenizer(str(tmp_path / "absent"))
    monkeypatch.setattr(tokenizer_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps open_clip_torch"):
        load_tokenizer()
