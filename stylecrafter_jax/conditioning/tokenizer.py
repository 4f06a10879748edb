"""The CLIP BPE tokenizer with open_clip's conventions: same cleaning, ids, truncation and zero padding.

Tokenization runs through transformers' slow `CLIPTokenizer` (which uses ftfy) after open_clip's
`basic_clean` (ftfy, HTML unescaping twice, strip). The tokenizer loads from a Hugging Face tokenizer
directory (vocab.json + merges.txt), or is built offline from the `bpe_simple_vocab_16e6.txt.gz` that
`open_clip_torch` ships (installed with `--no-deps`; found without importing the package).
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
import os
import tempfile
import warnings
from typing import Sequence

import ftfy
import numpy as np
from transformers import CLIPTokenizer

from stylecrafter_jax.errors import ConfigError

CONTEXT_LENGTH = 77
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
_NUM_MERGES = 49152 - 256 - 2


def basic_clean(text: str) -> str:
    """open_clip's cleaning before BPE: ftfy.fix_text, HTML-unescape twice, strip."""
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


class ClipTokenizer:
    """Text → (n, context_length) int32 ids: [SOT] + BPE + [EOT], zero-padded, truncated keeping EOT.

    Prompts longer than the context are truncated (the last kept id is set to EOT) with one warning
    per call naming how many were cut.
    """

    def __init__(self, hf_tokenizer: CLIPTokenizer, context_length: int = CONTEXT_LENGTH):
        self.hf_tokenizer = hf_tokenizer
        self.context_length = context_length
        self.sot_id = hf_tokenizer.convert_tokens_to_ids(START_OF_TEXT)
        self.eot_id = hf_tokenizer.convert_tokens_to_ids(END_OF_TEXT)

    def encode(self, text: str) -> list[int]:
        """Untruncated ids of one text, with SOT and EOT."""
        pieces = self.hf_tokenizer.tokenize(basic_clean(text))
        return [self.sot_id, *self.hf_tokenizer.convert_tokens_to_ids(pieces), self.eot_id]

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """Ids of one text or a sequence of texts, shape (n, context_length), int32."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = np.zeros((len(texts), self.context_length), np.int32)
        too_long = []
        for row, text in enumerate(texts):
            tokens = self.encode(text)
            if len(tokens) > self.context_length:
                too_long.append(text)
                tokens = tokens[:self.context_length - 1] + [self.eot_id]
            ids[row, :len(tokens)] = tokens
        if too_long:
            warnings.warn(f"{len(too_long)} prompt(s) longer than {self.context_length} tokens were truncated, "
                          f"the first: {too_long[0][:80]!r}", stacklevel=2)
        return ids


def open_clip_bpe_path() -> str | None:
    """Path of open_clip_torch's BPE vocabulary file, found without importing open_clip, or None."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], _BPE_FILE)
    return path if os.path.isfile(path) else None


def write_hf_vocab(bpe_path: str, out_dir: str) -> None:
    """Write vocab.json (49408 tokens) and merges.txt (48894 merges) from the gzipped BPE file.

    The vocabulary is built as OpenAI's SimpleTokenizer builds it: the 256 byte symbols, the same
    with `</w>`, one token per merge, then the start and end tokens.
    """
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1:_NUM_MERGES + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += [START_OF_TEXT, END_OF_TEXT]
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({token: i for i, token in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


def _bytes_to_unicode() -> dict[int, str]:
    """The reversible byte → printable-character table of GPT-2/CLIP BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def load_tokenizer(path: str | None = None, context_length: int = CONTEXT_LENGTH) -> ClipTokenizer:
    """The tokenizer from a Hugging Face tokenizer directory, or (path None) from open_clip's BPE file."""
    if path is not None:
        if not os.path.isdir(path):
            raise ConfigError(f"tokenizer path {path!r}: expected a Hugging Face tokenizer directory "
                              "holding vocab.json and merges.txt")
        return ClipTokenizer(CLIPTokenizer.from_pretrained(path), context_length)
    bpe_path = open_clip_bpe_path()
    if bpe_path is None:
        raise ConfigError(f"no CLIP vocabulary: pass a Hugging Face tokenizer directory, or install the "
                          f"package that ships {_BPE_FILE} with `pip install --no-deps open_clip_torch==3.3.0`")
    with tempfile.TemporaryDirectory() as tmp:
        write_hf_vocab(bpe_path, tmp)
        hf_tokenizer = CLIPTokenizer(os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt"))
    return ClipTokenizer(hf_tokenizer, context_length)
