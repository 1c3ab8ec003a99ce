"""The mention lexicon: phrases that name a code, matched in a note in time linear in its length.

Each source (coders' evidence spans, their shorter pieces, their discontinuous mentions, n-grams
mined from labelled notes, catalogue descriptions) has its own matcher, so a long phrase from one
source never hides a shorter one from another. Within a contiguous source the longest match at a
position wins, and a match inside a longer one is dropped. Each (mention, code) link carries its
precision in the training notes, which the fusion reads. Words are matched with their plural
endings cut (`lexicon_words`).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from model.text import Word, lexicon_words, plural_folded

# partial: shorter runs of the coders' phrases (`hepatitis` from `hepatitis cronica c`).
# split: the coders' discontinuous mentions, parts in text order (`ecografia` ... `renal derecha`).
SOURCES = ("evidence", "partial", "split", "mined", "catalogue")
# 2: keys are lexicon words (plural endings cut); 3: the split source and the reference words
LEXICON_FORMAT = 3
_END = ""  # trie key that marks "a mention ends here"; words are never empty
# Most characters between two consecutive parts of a split mention. Coders' parts sit a median
# 36 (diagnoses) and 78 (procedures) characters apart in CodiEsp train; a wider window composes
# more false mentions from parts that are common words (`renal`, `derecho`).
MAX_SPLIT_GAP = 150

SplitKey = tuple[tuple[str, ...], ...]  # a split mention's parts, each a word sequence
# A word right next to a match joins the match's evidence span when at least this share of its
# occurrences in training notes lies inside a coder's reference: coders mark `parálisis facial
# periférica` and `enfisema pulmonar` where the lexicon knows `parálisis facial` and `enfisema`.
SNAP_MIN_SHARE = 0.1


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


class _SpanMatcher:
    """What both matchers share: links per mention key, and `find`, which turns the matcher's
    `spans` (first word, stop word, mention key) into `Match`es."""

    _links: dict[Any, tuple[MentionLink, ...]]

    def spans(self, note_words: Sequence[Word]) -> list[tuple[int, int, Any]]:
        raise NotImplementedError

    @staticmethod
    def _words_in(key: Any) -> int:
        """How many words of the note a match of `key` covers (its gaps not counted)."""
        return len(key)

    def find(self, text: str, source: str, note_words: Sequence[Word] | None = None) -> list[Match]:
        """The matches in `text` with their links, in text order (`note_words`:
        `lexicon_words(text)`)."""
        note_words = lexicon_words(text) if note_words is None else note_words
        return [
            Match(
                source=source,
                start=note_words[first].start,
                end=note_words[stop - 1].end,
                n_words=self._words_in(key),
                links=self._links[key],
            )
            for first, stop, key in self.spans(note_words)
        ]


class MentionTrie(_SpanMatcher):
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
        texts = [word.text for word in note_words]
        longest: list[tuple[int, int, tuple[str, ...]]] = []
        for first, word in enumerate(texts):
            node = self._root.get(word)  # most words start no mention: one look-up each
            found: tuple[int, tuple[str, ...]] | None = None
            last = first
            while node is not None:
                if _END in node:
                    found = (last + 1, node[_END])
                last += 1
                node = node.get(texts[last]) if last < len(texts) else None
            if found is not None:
                longest.append((first, found[0], found[1]))
        maximal: list[tuple[int, int, tuple[str, ...]]] = []
        reach = 0  # word index the kept matches extend to; a match ending within it is inside
        for first, stop, key in longest:
            if stop > reach:
                reach = stop
                maximal.append((first, stop, key))
        return maximal


class SplitMentions(_SpanMatcher):
    """Discontinuous mentions: parts that name a code together though other words sit between
    them (`ecografia` ... `renal derecha` for a renal ultrasound). A match is each part found in
    text order, every part starting within `max_gap` characters of the previous part's end; it
    runs from the first part's start to the last part's end, the whole reference a coder marks.

    Each part is looked up where its first word occurs, so the cost is the note's length times
    the few parts that start with a word, plus the mentions whose first part occurs."""

    def __init__(
        self, mentions: Mapping[SplitKey, Sequence[MentionLink]], max_gap: int = MAX_SPLIT_GAP
    ) -> None:
        merged: dict[SplitKey, dict[str, MentionLink]] = {}
        for key, links in mentions.items():
            parts = tuple(tuple(plural_folded(word) for word in part) for part in key)
            if len(parts) >= 2 and all(parts) and links:
                codes = merged.setdefault(parts, {})
                for link in links:
                    codes.setdefault(link.code, link)
        self._links = {key: tuple(codes.values()) for key, codes in merged.items()}
        self.max_gap = max_gap
        self._parts_by_word: dict[str, set[tuple[str, ...]]] = {}
        self._keys_by_first: dict[tuple[str, ...], list[SplitKey]] = {}
        for key in self._links:
            self._keys_by_first.setdefault(key[0], []).append(key)
            for part in key:
                self._parts_by_word.setdefault(part[0], set()).add(part)

    def __len__(self) -> int:
        return len(self._links)

    @property
    def mentions(self) -> Mapping[SplitKey, tuple[MentionLink, ...]]:
        return self._links

    def _occurrences(self, note_words: Sequence[Word]) -> dict[tuple[str, ...], list[int]]:
        """Where each known part occurs: the index of its first word, in text order."""
        found: dict[tuple[str, ...], list[int]] = {}
        texts = [word.text for word in note_words]
        for first, word in enumerate(texts):
            for part in self._parts_by_word.get(word, ()):
                if tuple(texts[first : first + len(part)]) == part:
                    found.setdefault(part, []).append(first)
        return found

    def _chains(
        self, key: SplitKey, found: Mapping[tuple[str, ...], list[int]], note_words: Sequence[Word]
    ) -> list[tuple[int, int]]:
        """(first word, stop word) of each match of `key`: from each occurrence of its first
        part, the nearest next occurrence of each following part within the gap. Chains that
        end on the same word keep the shortest (the latest start)."""
        by_stop: dict[int, int] = {}
        for start in found[key[0]]:
            stop = start + len(key[0])
            for part in key[1:]:
                reach = note_words[stop - 1].end + self.max_gap
                following = [
                    first
                    for first in found[part]
                    if first >= stop and note_words[first].start <= reach
                ]
                if not following:
                    break
                stop = following[0] + len(part)
            else:
                by_stop[stop] = max(start, by_stop.get(stop, start))
        return sorted((start, stop) for stop, start in by_stop.items())

    def spans(self, note_words: Sequence[Word]) -> list[tuple[int, int, SplitKey]]:
        """Every match as (first word, stop word, mention), in text order."""
        found = self._occurrences(note_words)
        return sorted(
            (start, stop, key)
            for first_part in found
            for key in self._keys_by_first.get(first_part, ())
            if all(part in found for part in key[1:])
            for start, stop in self._chains(key, found, note_words)
        )

    @staticmethod
    def _words_in(key: Any) -> int:
        return sum(len(part) for part in key)


class Matcher(Protocol):
    """What a lexicon source matches with: a contiguous `MentionTrie` or `SplitMentions`."""

    def __len__(self) -> int: ...

    @property
    def mentions(self) -> Mapping[Any, tuple[MentionLink, ...]]: ...

    def find(
        self, text: str, source: str, note_words: Sequence[Word] | None = None
    ) -> list[Match]: ...


class MentionLexicon:
    """One matcher per source; `find` returns every source's matches, in text order.

    `reference_words` (lexicon word -> share of its occurrences in training notes inside a
    coder's reference) lets `evidence_span` snap a match to the phrase a coder would mark."""

    def __init__(
        self, tries: Mapping[str, Matcher], reference_words: Mapping[str, float] | None = None
    ) -> None:
        unknown = sorted(set(tries) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown lexicon sources {unknown}: use {list(SOURCES)}")
        self._tries = dict(tries)
        self.reference_words = dict(reference_words or {})

    @property
    def sources(self) -> list[str]:
        return [source for source in SOURCES if source in self._tries]

    def trie(self, source: str) -> Matcher:
        return self._tries[source]

    def codes(self) -> set[str]:
        """Every code some mention names: what the lexicon can propose."""
        return {
            link.code
            for trie in self._tries.values()
            for links in trie.mentions.values()
            for link in links
        }

    def find(self, text: str, note_words: Sequence[Word] | None = None) -> list[Match]:
        """Every source's matches in text order (`note_words`: `lexicon_words(text)`)."""
        note_words = lexicon_words(text) if note_words is None else note_words
        found = [
            match
            for source, trie in self._tries.items()
            for match in trie.find(text, source, note_words)
        ]
        return sorted(found, key=lambda match: (match.start, -match.end))

    def evidence_span(
        self, match: Match, text: str, note_words: Sequence[Word], starts: Sequence[int]
    ) -> tuple[int, int]:
        """The match widened by the word right before it and the word right after it, each only
        when nothing but spaces separates it from the match and coders include it in their
        references often enough (`SNAP_MIN_SHARE`). `starts`: each note word's start offset."""
        first = bisect_left(starts, match.start)
        stop = bisect_left(starts, match.end)  # the first word after the match
        start, end = match.start, match.end
        if first > 0:
            before = note_words[first - 1]
            if self._joins(before, text[before.end : start]):
                start = before.start
        if stop < len(note_words):
            after = note_words[stop]
            if self._joins(after, text[end : after.start]):
                end = after.end
        return start, end

    def _joins(self, word: Word, between: str) -> bool:
        return not between.strip() and self.reference_words.get(word.text, 0.0) >= SNAP_MIN_SHARE

    # -- the bundle artefact --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LEXICON_FORMAT,
            "sources": {
                source: [
                    {
                        _mention_field(source): _mention_text(source, key),
                        "links": [
                            [link.code, round(link.weight, 5), link.support, link.hits]
                            for link in links
                        ],
                    }
                    for key, links in sorted(trie.mentions.items())
                ]
                for source, trie in self._tries.items()
            },
            "reference_words": dict(sorted(self.reference_words.items())),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MentionLexicon:
        if raw.get("format") != LEXICON_FORMAT:
            raise ValueError(
                f"lexicon format {raw.get('format')!r}, this plant-icd reads {LEXICON_FORMAT}: "
                "re-export the bundle"
            )
        tries: dict[str, Matcher] = {}
        for source, entries in raw["sources"].items():
            mentions = {
                _mention_key(source, entry[_mention_field(source)]): [
                    MentionLink(str(code), float(weight), int(support), int(hits))
                    for code, weight, support, hits in entry["links"]
                ]
                for entry in entries
            }
            tries[source] = SplitMentions(mentions) if source == "split" else MentionTrie(mentions)
        return cls(tries, raw.get("reference_words", {}))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")))

    @classmethod
    def load(cls, path: Path) -> MentionLexicon:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _mention_field(source: str) -> str:
    """The artefact's field for a mention: "parts" (a list of phrases) for split mentions."""
    return "parts" if source == "split" else "mention"


def _mention_text(source: str, key: Any) -> Any:
    return [" ".join(part) for part in key] if source == "split" else " ".join(key)


def _mention_key(source: str, value: Any) -> Any:
    return (
        tuple(tuple(part.split()) for part in value) if source == "split" else tuple(value.split())
    )


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
