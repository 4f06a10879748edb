"""CaptionTokens: the cleaned captions' ids added to a batch, bytes decoded, the rest unchanged."""

import ml_collections
import numpy as np

from stylecrafter_jax.data.captions import clean_caption
from stylecrafter_jax.data.tokens import CaptionTokens

RULES = (r"^a painting of ",)


def test_batch_gains_the_ids_of_its_cleaned_captions(clip_tokenizer):
    section = ml_collections.ConfigDict(dict(rules=RULES, tidy=True))
    tokens = CaptionTokens.from_config(section, clip_tokenizer)
    batch = {"caption": np.array(["a painting of a cat ,", "a dog"], dtype=object), "index": np.arange(2)}
    out = tokens(batch)
    assert set(out) == {"caption", "index", "tokens"} and out["index"] is batch["index"]
    assert out["tokens"].shape == (2, 77) and out["tokens"].dtype == np.int32
    np.testing.assert_array_equal(out["tokens"], clip_tokenizer(["a cat", "a dog"]))
    np.testing.assert_array_equal(out["tokens"][0, :4], [49406, 320, 2368, 49407])  # "painting" and "," removed
    np.testing.assert_array_equal(tokens.ids([b"a painting of a cat ,"]), out["tokens"][:1])
    assert clean_caption("a painting of a cat ,", RULES) == "a cat"
