"""Tokenisation in the input pipeline: a batch map adding the cleaned captions' CLIP token ids."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from stylecrafter_jax.data.captions import clean_caption


@dataclasses.dataclass(frozen=True)
class CaptionTokens:
    """Batch -> the same batch with "tokens" (b, context) int32: its captions cleaned by `rules`/`tidy`, tokenized.

    Runs in grain's read threads (or worker processes), so the training thread receives token ids.
    """

    tokenizer: Callable[[Sequence[str]], np.ndarray]
    rules: tuple[str, ...]
    tidy: bool = True

    @classmethod
    def from_config(cls, captions: ml_collections.ConfigDict, tokenizer: Callable[[Sequence[str]], np.ndarray]
                    ) -> CaptionTokens:
        """From the data config's `captions` section (rules, tidy)."""
        return cls(tokenizer, tuple(captions.rules), bool(captions.tidy))

    def ids(self, captions: Sequence[Any]) -> np.ndarray:
        """Token ids (b, context) of `captions` (str or bytes)."""
        texts = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in captions]
        return self.tokenizer([clean_caption(text, self.rules, self.tidy) for text in texts])

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {**batch, "tokens": self.ids(batch["caption"])}
