"""Accent- and case-folded words with character offsets, shared by the lexicon and neighbour index.

Folding maps each character to exactly one character, so an offset into the folded text is an
offset into the note as sent: every match can be handed back as evidence without re-aligning.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

_WORD = re.compile(r"[a-z0-9]+")
# Folded Spanish and English function words: never the start or end of a mined phrase, never
# evidence of a word alignment.
_FUNCTION_WORDS_TEXT = (
    "a al an and as at by con de del el en for from in is la las lo los of on or para por "
    "que se su the to un una was were with y"
)
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())
# Latin, Latin-1 and Latin Extended-A/B cover the accents of Spanish and English notes; other
# characters are never word characters here (the regex above), which is what folding them would
# give anyway.
_TABLE_SIZE = 0x250


def _fold_char(char: str) -> str:
    """One character, lower-cased with its accents dropped; anything else non-word becomes ' '."""
    for part in unicodedata.normalize("NFD", char.lower()):
        if not unicodedata.combining(part):
            return part if part.isascii() and part.isalnum() else " "
    return " "


_FOLD_TABLE = {code: _fold_char(chr(code)) for code in range(_TABLE_SIZE)}


def fold(text: str) -> str:
    """Lower case, no accents; `len(fold(text)) == len(text)`, so offsets carry over."""
    return text.translate(_FOLD_TABLE)


class Word(NamedTuple):
    """A folded word and where it sits in the original text, [start, end) (a tuple: a note has
    hundreds, and a frozen dataclass cost more to build than finding them)."""

    text: str
    start: int
    end: int


def words(text: str) -> list[Word]:
    """The folded words of `text` with their offsets into `text`."""
    return [Word(m.group(), m.start(), m.end()) for m in _WORD.finditer(fold(text))]


def word_texts(text: str) -> list[str]:
    """The folded words of `text` without their offsets: `[w.text for w in words(text)]`, at a
    third of the cost (no Word per word)."""
    return _WORD.findall(fold(text))


_VOWELS = frozenset("aeiou")


def plural_folded(word: str) -> str:
    """`word` without plural endings (es/en): `lesiones` -> `lesion`, `urgencias` -> `urgencia`,
    `kidneys` -> `kidney`. Mentions and notes are cut alike, so an over-cut (`diabetes` ->
    `diabet`) still matches; idempotent, so a cut key can be cut again safely."""
    while len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-2] if word.endswith("es") and word[-3] not in _VOWELS else word[:-1]
    return word


def lexicon_words(text: str) -> list[Word]:
    """The words the lexicon matches on: folded, plural endings removed, offsets kept."""
    return [Word(plural_folded(m.group()), m.start(), m.end()) for m in _WORD.finditer(fold(text))]


def phrase_key(text: str) -> tuple[str, ...]:
    """The lexicon words of a phrase (folded, plural endings cut): how a mention is looked up."""
    return tuple(word.text for word in lexicon_words(text))
