"""The mention lexicon: phrases that name a code, matched in a note in time linear in its length.

Each source (coders' evidence spans, their shorter pieces, n-grams mined from labelled notes,
catalogue descriptions) has its own trie, so a long phrase from one source never hides a shorter
one from another. Within a source the longest match at a position wins, and a match inside a
longer one is dropped. Each (mention, code) link carries its precision in the training notes,
which the fusion reads. Words are matched with their plural endings cut (`lexicon_words`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.text import Word, lexicon_words, plural_folded

# partial: shorter runs of the coders' phrases (`hepatitis` from `hepatitis cronica c`).
SOURCES = ("evidence", "partial", "mined", "catalogue")
LEXICON_FORMAT = 2  # 2: keys are lexicon words (plural endings cut)
_END = ""  # trie key that marks "a mention ends here"; words are never empty


@dataclass(frozen=True, slots=True)
class MentionLink:
    """One code a mention names, with how often the mention meant that code in training notes."""

    code: str
    weight: float  # smoothed share of training notes with the mention that carry the code
    support: int  # training notes in which the mention was matched
    hits: int = 0  # of those, the notes that carry the code


@dataclass(frozen=True, slots=True)
class Match:
    """A mention found in a note: [start, end) characters, and the codes it names."""

    source: str
    start: int
    end: int
    n_words: int
    links: tuple[MentionLink, ...]


def _keyed_as_matched(
    mentions: Mapping[tuple[str, ...], Sequence[MentionLink]],
) -> dict[tuple[str, ...], tuple[MentionLink, ...]]:
    """Mentions keyed by the words notes are matched on (`lexicon_words`: plural endings cut),
    so a key written either way matches; keys that become one keep each code's first link."""
    merged: dict[tuple[str, ...], dict[str, MentionLink]] = {}
    for key, links in mentions.items():
        if key and links:
            codes = merged.setdefault(tuple(plural_folded(word) for word in key), {})
            for link in links:
                codes.setdefault(link.code, link)
    return {key: tuple(codes.values()) for key, codes in merged.items()}


class MentionTrie:
    """Mentions of one source as a word trie; `find` returns the maximal matches of a note."""

    def __init__(self, mentions: Mapping[tuple[str, ...], Sequence[MentionLink]]) -> None:
        self._links = _keyed_as_matched(mentions)
        self._root: dict[str, Any] = {}
        for key in self._links:
            node = self._root
            for word in key:
                node = node.setdefault(word, {})
            node[_END] = key

    def __len__(self) -> int:
        return len(self._links)

    @property
    def mentions(self) -> Mapping[tuple[str, ...], tuple[MentionLink, ...]]:
        return self._links

    def spans(self, note_words: Sequence[Word]) -> list[tuple[int, int, tuple[str, ...]]]:
        """Maximal matches as (first word, stop word, mention), left to right: the longest at
        each start, none inside another.

        Each start walks the trie only while the words continue a known mention, so the cost is
        the note's length times the typical (short) walk, never the lexicon's size.
        """
        longest: list[tuple[int, int, tuple[str, ...]]] = []
        for first in range(len(note_words)):
            node = self._root
            found: tuple[int, tuple[str, ...]] | None = None
            for last in range(first, len(note_words)):
                next_node = node.get(note_words[last].text)
                if next_node is None:
                    break
                node = next_node
                if _END in node:
                    found = (last + 1, node[_END])
            if found is not None:
                longest.append((first, found[0], found[1]))
        maximal: list[tuple[int, int, tuple[str, ...]]] = []
        reach = 0  # word index the kept matches extend to; a match ending within it is inside
        for first, stop, key in longest:
            if stop > reach:
                reach = stop
                maximal.append((first, stop, key))
        return maximal

    def find(self, text: str, source: str, note_words: Sequence[Word] | None = None) -> list[Match]:
        """The maximal matches in `text` with their links (`note_words`: `lexicon_words(text)`)."""
        note_words = lexicon_words(text) if note_words is None else note_words
        return [
            Match(
                source=source,
                start=note_words[first].start,
                end=note_words[stop - 1].end,
                n_words=stop - first,
                links=self._links[key],
            )
            for first, stop, key in self.spans(note_words)
        ]


class MentionLexicon:
    """One trie per source; `find` returns every source's maximal matches, in text order."""

    def __init__(self, tries: Mapping[str, MentionTrie]) -> None:
        unknown = sorted(set(tries) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown lexicon sources {unknown}: use {list(SOURCES)}")
        self._tries = dict(tries)

    @property
    def sources(self) -> list[str]:
        return [source for source in SOURCES if source in self._tries]

    def trie(self, source: str) -> MentionTrie:
        return self._tries[source]

    def codes(self) -> set[str]:
        """Every code some mention names: what the lexicon can propose."""
        return {
            link.code
            for trie in self._tries.values()
            for links in trie.mentions.values()
            for link in links
        }

    def find(self, text: str) -> list[Match]:
        note_words = lexicon_words(text)
        found = [
            match
            for source, trie in self._tries.items()
            for match in trie.find(text, source, note_words)
        ]
        return sorted(found, key=lambda match: (match.start, -match.end))

    # -- the bundle artefact --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LEXICON_FORMAT,
            "sources": {
                source: [
                    {
                        "mention": " ".join(key),
                        "links": [
                            [link.code, round(link.weight, 5), link.support, link.hits]
                            for link in links
                        ],
                    }
                    for key, links in sorted(trie.mentions.items())
                ]
                for source, trie in self._tries.items()
            },
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MentionLexicon:
        if raw.get("format") != LEXICON_FORMAT:
            raise ValueError(
                f"lexicon format {raw.get('format')!r}, this plant-icd reads {LEXICON_FORMAT}: "
                "re-export the bundle"
            )
        tries = {
            source: MentionTrie(
                {
                    tuple(entry["mention"].split()): [
                        MentionLink(str(code), float(weight), int(support), int(hits))
                        for code, weight, support, hits in entry["links"]
                    ]
                    for entry in entries
                }
            )
            for source, entries in raw["sources"].items()
        }
        return cls(tries)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")))

    @classmethod
    def load(cls, path: Path) -> MentionLexicon:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def noisy_or(weights: Iterable[float]) -> float:
    """The chance that at least one of independent mentions means the code: 1 - prod(1 - w)."""
    return 1.0 - math.prod(1.0 - weight for weight in weights)


def links_by_code(matches: Iterable[Match]) -> dict[str, list[tuple[Match, MentionLink]]]:
    """The matches that name each code, in text order."""
    by_code: dict[str, list[tuple[Match, MentionLink]]] = {}
    for match in matches:
        for link in match.links:
            by_code.setdefault(link.code, []).append((match, link))
    return by_code
