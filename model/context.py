"""Negation, uncertainty and family history around evidence spans, NegEx/ConText style.

Owns the trigger lists' format (`model/data/context_{es,en}.json`), accent- and case-folded
matching, and the scope rule. A note is read once (`ContextRules.read`, linear in its length);
any span in it can then be asked about (`NoteContext.flags`). Pure Python, no numpy.
"""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

CATEGORIES = ("negated", "hypothetical", "family")
DIRECTIONS = ("pre", "post")  # a pre-trigger's scope follows it; a post-trigger's precedes it
LANGUAGES = ("es", "en")

# Words (letters and digits, with any combining accents of decomposed text) or one punctuation
# character each. Triggers are tokenised the same way, so "doesn't" matches "doesn ' t".
_TOKEN = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+|[^\w\s]")
_SENTENCE_END = frozenset(".!?")


# Notes repeat their words, and the service reads every note: a word is folded once per process.
@lru_cache(maxsize=1 << 16)
def fold(text: str) -> str:
    """Accent- and case-folded form used for matching: `Niegó` -> `nego`."""
    decomposed = unicodedata.normalize("NFKD", text.replace("’", "'"))
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


def phrase_words(phrase: str) -> tuple[str, ...]:
    """A trigger phrase as the folded tokens it must match."""
    return tuple(match.group() for match in _TOKEN.finditer(fold(phrase)))


@dataclass(frozen=True)
class ContextFlags:
    """What surrounds one span: each flag, and the trigger phrases (as written) that set them."""

    negated: bool = False
    hypothetical: bool = False
    family: bool = False
    cues: tuple[str, ...] = ()

    @property
    def any(self) -> bool:
        return self.negated or self.hypothetical or self.family

    @classmethod
    def union(cls, parts: Iterable[ContextFlags]) -> ContextFlags:
        """Flags of a span made of several parts: a flag set on any part, every cue once."""
        parts = list(parts)
        return cls(
            negated=any(part.negated for part in parts),
            hypothetical=any(part.hypothetical for part in parts),
            family=any(part.family for part in parts),
            cues=tuple(dict.fromkeys(cue for part in parts for cue in part.cues)),
        )


@dataclass(frozen=True)
class _Phrase:
    """Everything one folded phrase is: at most one trigger role, and/or pseudo, terminator."""

    trigger: tuple[str, str] | None  # (category, direction)
    pseudo: bool
    terminator: bool


class _Token(NamedTuple):
    """One word or punctuation character of a note (a tuple: a note has hundreds, and a frozen
    dataclass cost more to build than the rest of reading the note)."""

    start: int
    end: int
    folded: str
    is_word: bool


_NO_FLAGS = ContextFlags()


class ContextRulesError(ValueError):
    """A trigger file that breaks the format; the message names the file and the entry."""


class ContextRules:
    """One language's trigger lists and scope rule.

    Scope rule: a pre-trigger covers the words after it, a post-trigger the words before it, up
    to the category's `max_scope_words` words, never past a sentence end (`.`, `!`, `?` or a line
    break) or a terminator phrase (`pero`, `but`, `;` ...). Matching is greedy, longest phrase
    first, left to right, so a pseudo-trigger ("no obstante", "not only") or a longer trigger
    ("no se descarta": hypothetical) takes the words before a shorter one ("no") can.
    """

    def __init__(
        self,
        language: str,
        phrases: Mapping[tuple[str, ...], _Phrase],
        max_scope_words: Mapping[str, int],
    ) -> None:
        self.language = language
        self._max_scope_words = dict(max_scope_words)
        # First word -> phrases starting with it, longest first: the longest match wins.
        self._by_first_word: dict[str, list[tuple[tuple[str, ...], _Phrase]]] = {}
        for words, phrase in phrases.items():
            self._by_first_word.setdefault(words[0], []).append((words, phrase))
        for candidates in self._by_first_word.values():
            candidates.sort(key=lambda entry: -len(entry[0]))

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "context rules") -> ContextRules:
        """Build rules from the JSON structure of `model/data/context_*.json` (see its README)."""

        def fail(message: str) -> ContextRulesError:
            return ContextRulesError(f"{source}: {message}")

        language = raw.get("language")
        if not isinstance(language, str):
            raise fail("'language' must be a string such as 'es'")
        default_scope = _positive_int(raw.get("max_scope_words"), "max_scope_words", fail)
        categories = raw.get("categories")
        if not isinstance(categories, dict) or set(categories) != set(CATEGORIES):
            raise fail(f"'categories' must hold exactly {list(CATEGORIES)}")

        roles: dict[tuple[str, ...], dict[str, Any]] = {}

        def role_of(phrase: object, where: str) -> dict[str, Any]:
            if not isinstance(phrase, str) or not phrase_words(phrase):
                raise fail(f"{where}: {phrase!r} is not a phrase with words")
            return roles.setdefault(
                phrase_words(phrase), {"trigger": None, "pseudo": False, "terminator": False}
            )

        max_scope: dict[str, int] = {}
        for category in CATEGORIES:
            entry = categories[category]
            max_scope[category] = _positive_int(
                entry.get("max_scope_words", default_scope), f"{category}.max_scope_words", fail
            )
            for direction in DIRECTIONS:
                for phrase in _string_list(
                    entry.get(direction, []), f"{category}.{direction}", fail
                ):
                    role = role_of(phrase, f"{category}.{direction}")
                    if role["trigger"] is not None:
                        raise fail(
                            f"{phrase!r} is listed twice as a trigger ({role['trigger']} and "
                            f"{(category, direction)}); a phrase has one role"
                        )
                    role["trigger"] = (category, direction)
        for phrase in _string_list(raw.get("pseudo", []), "pseudo", fail):
            role = role_of(phrase, "pseudo")
            if role["trigger"] is not None:
                raise fail(f"{phrase!r} is both a trigger and a pseudo-trigger")
            role["pseudo"] = True
        for phrase in _string_list(raw.get("terminators", []), "terminators", fail):
            role = role_of(phrase, "terminators")
            if role["trigger"] is not None:
                raise fail(f"{phrase!r} is both a trigger and a terminator")
            role["terminator"] = True

        phrases = {words: _Phrase(**role) for words, role in roles.items()}
        return cls(language, phrases, max_scope)

    @classmethod
    def from_file(cls, path: Path | str) -> ContextRules:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ContextRulesError(f"{path} is not valid JSON: {error}") from error
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def for_language(cls, language: str) -> ContextRules:
        """The shipped rules for "es" or "en" (read once, then shared: rules are immutable)."""
        if language not in LANGUAGES:
            raise ValueError(f"no context rules for language {language!r}; use one of {LANGUAGES}")
        return _shipped_rules(language)

    # -- reading a note ----------------------------------------------------------------------

    def read(self, text: str) -> NoteContext:
        """Find every trigger's scope in `text` once; ask about spans with `.flags(start, end)`."""
        tokens = [
            _Token(match.start(), match.end(), fold(match.group()), match.group()[0].isalnum())
            for match in _TOKEN.finditer(text)
        ]
        breaks = _sentence_breaks(text, tokens)
        matches = self._match(tokens, breaks)
        ends = [_ends_sentence(text, token) for token in tokens]
        segments = _segments(breaks, ends, matches)
        marks: list[int] = [0] * len(tokens)  # bit per category
        cues: list[list[int]] = [[] for _ in tokens]  # indices into `triggers`
        triggers: list[tuple[str, str]] = []  # (category, the trigger as written)
        for first, stop, phrase in matches:
            if phrase.trigger is None:
                continue
            category, direction = phrase.trigger
            triggers.append((category, text[tokens[first].start : tokens[stop - 1].end]))
            bit = 1 << CATEGORIES.index(category)
            for index in self._scope(tokens, segments, first, stop, direction, category):
                marks[index] |= bit
                cues[index].append(len(triggers) - 1)
        return NoteContext(len(text), tokens, marks, cues, triggers)

    def _match(self, tokens: list[_Token], breaks: list[bool]) -> list[tuple[int, int, _Phrase]]:
        """Greedy longest-first matches, left to right: (first token, stop token, phrase).

        A match never spans a sentence break. Cost: per token, the phrases sharing its first
        word, each no longer than the longest phrase: linear in the note for fixed lists.
        """
        matches: list[tuple[int, int, _Phrase]] = []
        folded = [token.folded for token in tokens]
        index = 0
        while index < len(tokens):
            found = None
            for words, phrase in self._by_first_word.get(folded[index], ()):
                stop = index + len(words)
                if (
                    stop <= len(tokens)
                    and not any(breaks[index + 1 : stop])
                    and tuple(folded[index:stop]) == words
                ):
                    found = (index, stop, phrase)
                    break
            if found is None:
                index += 1
            else:
                matches.append(found)
                index = found[1]
        return matches

    def _scope(
        self,
        tokens: list[_Token],
        segments: list[int],
        first: int,
        stop: int,
        direction: str,
        category: str,
    ) -> list[int]:
        """Token indices a trigger at [first, stop) covers: its segment's words, up to the limit."""
        limit = self._max_scope_words[category]
        if direction == "pre":
            segment, step, index = segments[stop - 1], 1, stop
        else:
            segment, step, index = segments[first], -1, first - 1
        covered: list[int] = []
        words = 0
        while 0 <= index < len(tokens) and segments[index] == segment and words < limit:
            if tokens[index].is_word:
                covered.append(index)
                words += 1
            index += step
        return covered


def _positive_int(value: object, where: str, fail: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise fail(f"'{where}' must be a positive whole number of words, not {value!r}")
    return value


def _string_list(value: object, where: str, fail: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise fail(f"'{where}' must be a list of phrases")
    return value


def _sentence_breaks(text: str, tokens: list[_Token]) -> list[bool]:
    """Per token: whether a line break lies between it and the token before."""
    return [
        index > 0 and "\n" in text[tokens[index - 1].end : token.start]
        for index, token in enumerate(tokens)
    ]


def _ends_sentence(text: str, token: _Token) -> bool:
    """`.`, `!` or `?`, except a dot inside a number or abbreviation ("3.5", "aprox. 3 cm",
    "p. ej. fiebre"): one followed by a letter or digit, or by a space and a lower-case word or
    a digit."""
    if token.folded not in _SENTENCE_END:
        return False
    if token.folded != ".":
        return True
    rest = text[token.end : token.end + 3]
    if rest[:1].isalnum():
        return False
    following = rest.lstrip(" ")[:1]
    return not (following.islower() or following.isdigit())


def _segments(
    breaks: list[bool], ends: list[bool], matches: list[tuple[int, int, _Phrase]]
) -> list[int]:
    """Per token, the id of the stretch no scope may leave: sentence ends and terminator tokens
    get an id of their own, so a scope stops on reaching them."""
    terminator_tokens = {
        index
        for first, stop, phrase in matches
        if phrase.terminator
        for index in range(first, stop)
    }
    segments: list[int] = []
    segment = 0
    for index, sentence_end in enumerate(ends):
        if breaks[index]:
            segment += 1
        if sentence_end or index in terminator_tokens:
            segment += 1
            segments.append(segment)
            segment += 1
        else:
            segments.append(segment)
    return segments


class NoteContext:
    """One note's trigger scopes, ready for any number of span look-ups."""

    def __init__(
        self,
        text_length: int,
        tokens: list[_Token],
        marks: list[int],
        cues: list[list[int]],
        triggers: list[tuple[str, str]],
    ) -> None:
        self._text_length = text_length
        self._starts = [token.start for token in tokens]
        self._ends = [token.end for token in tokens]
        self._marks = marks
        self._cues = cues
        self._triggers = triggers

    def flags(self, start: int, end: int) -> ContextFlags:
        """Flags of the span [start, end): a category is set when any word of the span lies in
        one of its triggers' scopes (the trigger's own words are never in its scope)."""
        if not 0 <= start <= end <= self._text_length:
            raise ValueError(
                f"span {start}-{end} lies outside the note's {self._text_length} characters"
            )
        bits = 0
        cue_ids: list[int] = []
        index = bisect_right(self._ends, start)  # first token ending after `start`
        while index < len(self._starts) and self._starts[index] < end:
            bits |= self._marks[index]
            cue_ids.extend(self._cues[index])
            index += 1
        if not bits:  # most spans: no scope covers them, so no cue either
            return _NO_FLAGS
        cues = tuple(dict.fromkeys(self._triggers[cue][1] for cue in cue_ids))
        return ContextFlags(
            negated=bool(bits & 1),
            hypothetical=bool(bits & 2),
            family=bool(bits & 4),
            cues=cues,
        )


@cache
def _shipped_rules(language: str) -> ContextRules:
    resource = resources.files("model") / "data" / f"context_{language}.json"
    raw = json.loads(resource.read_text(encoding="utf-8"))
    return ContextRules.from_dict(raw, source=f"model/data/context_{language}.json")
