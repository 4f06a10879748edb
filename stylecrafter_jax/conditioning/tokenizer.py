"""The CLIP BPE tokenizer with open_clip's conventions: same cleaning, ids, truncation and zero padding.

Text is cleaned as open_clip's `SimpleTokenizer` cleans it (ftfy, HTML unescaping twice, whitespace
collapsed, lower case), then split and merged by the Rust BPE of the `tokenizers` package with CLIP's
word pattern, byte-level alphabet and `</w>` word ends. The vocabulary loads from a Hugging Face tokenizer
directory (vocab.json + merges.txt), or is built from the `bpe_simple_vocab_16e6.txt.gz` that
`open_clip_torch` ships (installed with `--no-deps`; found without importing the package).
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
import os
import warnings
from typing import Sequence

import ftfy
import numpy as np
from tokenizers import Regex, Tokenizer, models, pre_tokenizers

from stylecrafter_jax.errors import ConfigError

CONTEXT_LENGTH = 77
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
OPEN_CLIP_PACKAGE = "open_clip_torch==3.3.0"
_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
_NUM_MERGES = 49152 - 256 - 2
# CLIP's word pattern (contractions, letter runs, single digits, other non-space runs), on lower-cased text.
_WORD_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"

Vocabulary = tuple[dict[str, int], list[tuple[str, str]]]


def basic_clean(text: str) -> str:
    """open_clip's cleaning before BPE: ftfy.fix_text, HTML-unescape twice, strip."""
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def clean_text(text: str) -> str:
    """What open_clip's default ("lower") cleaning feeds the BPE: basic_clean, whitespace collapsed, lower case."""
    return " ".join(basic_clean(text).split()).lower()


def _bpe_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Tokenizer:
    """The `tokenizers` pipeline of CLIP's BPE: word pattern, byte-level symbols, merges with `</w>` ends."""
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_WORD_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    return tokenizer


class ClipTokenizer:
    """Text → (n, context_length) int32 ids: [SOT] + BPE + [EOT], zero-padded, truncated keeping EOT.

    Prompts longer than the context are truncated (the last kept id is set to EOT) with one warning
    per call naming how many were cut. Picklable (grain worker processes receive it).
    """

    def __init__(self, vocabulary: Vocabulary, context_length: int = CONTEXT_LENGTH):
        vocab, merges = vocabulary
        self.vocabulary = vocabulary
        self.context_length = context_length
        self.sot_id = vocab[START_OF_TEXT]
        self.eot_id = vocab[END_OF_TEXT]
        self._bpe = _bpe_tokenizer(vocab, merges)

    def __getstate__(self) -> dict:
        return {"vocabulary": self.vocabulary, "context_length": self.context_length}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["vocabulary"], state["context_length"])

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Untruncated ids of each text, with SOT and EOT."""
        encodings = self._bpe.encode_batch([clean_text(t) for t in texts], add_special_tokens=False)
        return [[self.sot_id, *e.ids, self.eot_id] for e in encodings]

    def encode(self, text: str) -> list[int]:
        """Untruncated ids of one text, with SOT and EOT."""
        return self.encode_many([text])[0]

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """Ids of one text or a sequence of texts, shape (n, context_length), int32."""
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        ids = np.zeros((len(texts), self.context_length), np.int32)
        too_long = []
        for row, (text, tokens) in enumerate(zip(texts, self.encode_many(texts))):
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


def read_bpe_file(bpe_path: str) -> Vocabulary:
    """(vocab of 49408 tokens, 48894 merges) from the gzipped BPE file.

    The vocabulary is built as OpenAI's SimpleTokenizer builds it: the 256 byte symbols, the same
    with `</w>`, one token per merge, then the start and end tokens.
    """
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:_NUM_MERGES + 1]]
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [START_OF_TEXT, END_OF_TEXT]
    return {token: i for i, token in enumerate(tokens)}, merges


def write_hf_vocab(vocabulary: Vocabulary, out_dir: str) -> None:
    """Write `vocabulary` as a Hugging Face tokenizer directory: vocab.json and merges.txt."""
    vocab, merges = vocabulary
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")


def read_hf_vocab(path: str) -> Vocabulary:
    """(vocab, merges) of a Hugging Face tokenizer directory holding vocab.json and merges.txt."""
    files = [os.path.join(path, name) for name in ("vocab.json", "merges.txt")]
    if not all(os.path.isfile(f) for f in files):
        raise ConfigError(f"tokenizer path {path!r}: expected a Hugging Face tokenizer directory "
                          "holding vocab.json and merges.txt")
    with open(files[0], encoding="utf-8") as f:
        vocab = json.load(f)
    with open(files[1], encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().split("\n")
                  if line.strip() and not line.startswith("#version")]
    return vocab, merges


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
        return ClipTokenizer(read_hf_vocab(path), context_length)
    bpe_path = open_clip_bpe_path()
    if bpe_path is None:
        raise ConfigError(f"no CLIP vocabulary: pass a Hugging Face tokenizer directory, or install the "
                          f"package that ships {_BPE_FILE} with `pip install --no-deps {OPEN_CLIP_PACKAGE}`")
    return ClipTokenizer(read_bpe_file(bpe_path), context_length)
