"""Caption cleaning: the style-word removal regexes of the reference, a fixed variant, and a before/after tool.

The reference (the official StyleCrafter-SDXL training data code) deletes, in order and case-sensitively:
  1. leading "(a) [words] NOUN of " phrases, repeated;
  2. "in (a) [words] NOUN" anywhere;
  3. a leading "painting - ", "photograph - ", "digital art - " or "black and white photograph - ".
Rule 2 over-deletes: its word run is unbounded and may cross prepositions ("a dog in the park with a nice
view" loses everything after "dog"), "in" is not word-anchored ("a mountain landscape painting" becomes
"a mounta"), and a noun may be the prefix of a longer word ("in a photography studio" leaves "graphy
studio"). Rule 1 has the same unbounded run ("a man with a view of the sea" becomes "the sea").

The fixed rules (`FIXED_RULES`, the default) keep the reference's nouns, order and case-sensitivity and:
  * anchor "in" and every noun on word boundaries;
  * allow one article (a/an/the) and at most `MAX_FILLER_WORDS` filler words before the noun, none of them
    a preposition, verb or conjunction from `STOP_WORDS` ("and" stays allowed for "black and white");
  * add "in the style of <name>" (up to the next , . ; or the end), which the reference leaves in.
`tidy` then collapses repeated spaces and trims spaces and commas at both ends (the reference leaves them).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from functools import lru_cache

NOUNS = ("painting", "drawing", "mural", "artwork", "view", "portrait", "photo", "photograph", "watercolor",
         "illustration", "picture", "digital art")
STOP_WORDS = ("with", "of", "in", "on", "at", "by", "near", "from", "to", "into", "under", "over", "behind",
              "for", "while", "during", "through", "is", "are", "was", "has", "have", "that", "which", "where")
MAX_FILLER_WORDS = 4

_NOUN_GROUP = "(?:" + "|".join(NOUNS) + ")"

REFERENCE_RULES = (
    r"^((a )?(\w+\s+)*" + _NOUN_GROUP + " of )+",
    r"in (a )?(\w+\s+)*" + _NOUN_GROUP + r"\s?",
    r"^(?:painting|photograph|digital art|black and white photograph) - ",
)

_FILLER = r"(?:(?!(?:" + "|".join(STOP_WORDS) + r")\b)\w+\s+){0," + str(MAX_FILLER_WORDS) + "}"
_ARTICLE = r"(?:(?:an?|the)\s+)?"
FIXED_RULES = (
    r"^(?:" + _ARTICLE + _FILLER + r"\b" + _NOUN_GROUP + r"\s+of\s+)+",
    r"\bin\s+" + _ARTICLE + _FILLER + r"\b" + _NOUN_GROUP + r"\b\s?",
    r"^(?:painting|photograph|digital art|black and white photograph) - ",
    r",?\s*\bin the style of\b[^,.;]*",
)

PRESETS = {"fixed": FIXED_RULES, "reference": REFERENCE_RULES, "none": ()}


@lru_cache(maxsize=64)
def _compiled(rules: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(rule) for rule in rules)


def clean_caption(caption: str, rules: Sequence[str] = FIXED_RULES, tidy: bool = True) -> str:
    """Deletes every match of each regex in `rules`, in order; `tidy` collapses spaces and trims ", " ends."""
    for pattern in _compiled(tuple(rules)):
        caption = pattern.sub("", caption)
    if tidy:
        caption = re.sub(r"\s{2,}", " ", caption).strip(" ,")
    return caption


def _print_table(captions: Sequence[str], rules: Sequence[str], tidy: bool, changed_only: bool) -> int:
    changed = 0
    for before in captions:
        after = clean_caption(before, rules, tidy)
        changed += after != before
        if after != before or not changed_only:
            print(f"{before!r}\n  -> {after!r}")
    print(f"{changed} of {len(captions)} captions changed")
    return changed


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: print each caption of FILE (CSV/JSONL captions file or one caption per line) before and after."""
    from stylecrafter_jax.data.build.caption_files import read_caption_column

    parser = argparse.ArgumentParser(prog="python -m stylecrafter_jax.data.captions", description=main.__doc__)
    parser.add_argument("file", help="captions file: .csv or .jsonl with a caption column, or plain text")
    parser.add_argument("--rules", choices=sorted(PRESETS), default="fixed", help="rule preset (default fixed)")
    parser.add_argument("--no-tidy", action="store_true", help="keep double spaces and edge commas")
    parser.add_argument("--changed-only", action="store_true", help="print only captions the rules change")
    args = parser.parse_args(argv)
    _print_table(read_caption_column(args.file), PRESETS[args.rules], not args.no_tidy, args.changed_only)


if __name__ == "__main__":
    main(sys.argv[1:])
