"""The code catalogue: descriptions, hierarchy, validation and type-ahead search per code system.

ICD-10-CM comes from the `simple-icd-10-cm` package; ICD-10-PCS and ICD-9 have no well-kept
registry package, so they get a format check, the PCS section as chapter, and no description.
"""

from __future__ import annotations

import bisect
import heapq
import re
import threading
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from model.codes import CodeSystem, compact, normalize

ICD10CM_SOURCE = "simple-icd-10-cm"
# Marks a code whose description no registry could supply: callers show the code alone.
UNAVAILABLE = "unavailable"

Kind = Literal["chapter", "block", "code"]

SYSTEM_LABELS: dict[CodeSystem, str] = {
    CodeSystem.ICD10_CM: "ICD-10-CM",
    CodeSystem.ICD10_PCS: "ICD-10-PCS",
    CodeSystem.ICD9_CM: "ICD-9-CM diagnosis",
    CodeSystem.ICD9_PCS: "ICD-9-CM procedure",
}

# The first character of an ICD-10-PCS code is its section; the meanings are fixed by CMS.
PCS_SECTIONS: dict[str, str] = {
    "0": "Medical and Surgical",
    "1": "Obstetrics",
    "2": "Placement",
    "3": "Administration",
    "4": "Measurement and Monitoring",
    "5": "Extracorporeal or Systemic Assistance and Performance",
    "6": "Extracorporeal or Systemic Therapies",
    "7": "Osteopathic",
    "8": "Other Procedures",
    "9": "Chiropractic",
    "B": "Imaging",
    "C": "Nuclear Medicine",
    "D": "Radiation Therapy",
    "F": "Physical Rehabilitation and Diagnostic Audiology",
    "G": "Mental Health",
    "H": "Substance Abuse Treatment",
    "X": "New Technology",
}

# Format checks for the systems without a registry, applied to the normalised code.
_FORMATS: dict[CodeSystem, tuple[re.Pattern[str], str]] = {
    CodeSystem.ICD9_CM: (
        re.compile(r"^(\d{3}|V\d{2}|E\d{3})(\.\d{1,2})?$"),
        "three digits, V and two digits, or E and three digits, then optionally a dot and one "
        "or two digits (e.g. 401.9, V45.01, E849.0)",
    ),
    CodeSystem.ICD9_PCS: (
        re.compile(r"^\d{2}(\.\d{1,2})?$"),
        "two digits, then optionally a dot and one or two digits (e.g. 38.93)",
    ),
    # Besides full seven-character codes, the four-character partial code (section, body
    # system, root operation, body part): CodiEsp-P codes about half its procedures that way.
    CodeSystem.ICD10_PCS: (
        re.compile(rf"^[{''.join(PCS_SECTIONS)}][0-9A-HJ-NP-Z]{{3}}([0-9A-HJ-NP-Z]{{3}})?$"),
        "seven characters (or CodiEsp's four-character partial code) from 0-9 and A-Z without "
        f"I or O, the first a section ({', '.join(PCS_SECTIONS)}) (e.g. BW03ZZZ, 0DTJ)",
    ),
}


@dataclass(frozen=True)
class HierarchyNode:
    """A chapter, block or category; `description` is "" where no source names it."""

    code: str
    description: str


@dataclass(frozen=True)
class CodeInfo:
    """What the catalogue knows about one code (or, for ICD-10-CM, a chapter or block).

    `valid`: True when the registry confirms the code; False when it is malformed or absent from
    the registry; None when it is well formed but the system has no registry to confirm it.
    `description_source` is "unavailable" when only the code is known.
    """

    code: str
    system: CodeSystem
    description: str
    description_source: str
    valid: bool | None
    kind: Kind = "code"
    is_billable: bool | None = None
    chapter: HierarchyNode | None = None
    block: HierarchyNode | None = None
    category: HierarchyNode | None = None


class UnknownCodeError(ValueError):
    """A code the catalogue cannot accept; the message says what to fix."""

    def __init__(self, code: str, system: CodeSystem, hint: str) -> None:
        self.code = code
        self.system = system
        self.hint = hint
        super().__init__(f"{code!r} is not a valid {SYSTEM_LABELS[system]} code: {hint}")


def _fold(text: str) -> str:
    """Case- and accent-insensitive form for matching: `Sézary` -> `sezary`."""
    if text.isascii():  # nearly every description: skip the per-character pass
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(_fold(text))


@dataclass(frozen=True)
class _Entry:
    """One ICD-10-CM item; entry ids are assigned in ranking order (see `_Icd10cmIndex`)."""

    code: str
    key: str  # `compact` form, the code-prefix search key
    description: str
    words: tuple[str, ...]  # folded description words, for word-prefix matching
    kind: Kind
    is_leaf: bool
    chapter: HierarchyNode
    block: HierarchyNode | None
    category: HierarchyNode | None


class _Icd10cmIndex:
    """Every ICD-10-CM chapter, block and code, with a code-prefix and a word-prefix index.

    Entry ids follow the ranking used for search (chapters, blocks, then codes by length, ties in
    tabular order), so a sorted set of matching ids is already a ranked result list.
    """

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self.by_code = {entry.code: index for index, entry in enumerate(entries)}
        self.keys = sorted((entry.key, index) for index, entry in enumerate(entries))
        self.key_list = [key for key, _ in self.keys]
        postings: dict[str, list[int]] = {}
        for index, entry in enumerate(entries):
            for word in entry.words:
                postings.setdefault(word, []).append(index)
        self.postings = postings
        self.vocabulary = sorted(postings)

    @classmethod
    def build(cls) -> _Icd10cmIndex:
        # Imported here: the package parses its XML release on import (~1.5 s), and nothing may
        # be built when the service imports this module.
        with warnings.catch_warnings():
            # Its loader uses importlib.resources calls deprecated in 3.11: its concern, not ours.
            warnings.simplefilter("ignore", DeprecationWarning)
            import simple_icd_10_cm as cm

        names: list[str] = cm.get_all_codes(True)
        # A block holding a single category shares its name (block B10, category B10); the
        # tabular pre-order lists the block first, so the first of a repeated name is the block.
        counts: dict[str, int] = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        opened: set[str] = set()
        chapter: HierarchyNode | None = None
        block: HierarchyNode | None = None
        category: HierarchyNode | None = None
        pending: list[tuple[int, int, _Entry]] = []
        for order, name in enumerate(names):
            kind: Kind = "code"
            if name.isdigit():
                kind = "chapter"
            elif "-" in name or (counts[name] > 1 and name not in opened):
                kind = "block"
                opened.add(name)
            # By name the package finds the category; `prioritize_blocks` finds its twin block.
            description: str = cm.get_description(name, prioritize_blocks=kind == "block")
            node = HierarchyNode(name, description)
            if kind == "chapter":
                chapter, block, category = node, None, None
            elif kind == "block":
                block, category = node, None
            elif len(compact(name)) == 3:
                category = node
            if chapter is None:
                raise RuntimeError(f"simple-icd-10-cm listed {name} before any chapter")
            if kind == "block" and counts[name] > 1:
                # Its category carries the same code and a description without the range, so
                # the block is reached through `CodeInfo.block` rather than listed twice.
                continue
            entry = _Entry(
                code=name,
                key=compact(name),
                description=description,
                words=tuple(dict.fromkeys(_words(description))),
                kind=kind,
                is_leaf=kind == "code" and bool(cm.is_leaf(name)),
                chapter=chapter,
                block=block,
                category=category if kind == "code" else None,
            )
            depth = {"chapter": 0, "block": 1}.get(kind, len(entry.key))
            pending.append((depth, order, entry))
        pending.sort(key=lambda ranked: ranked[:2])
        return cls([entry for _, _, entry in pending])

    def prefix_ids(self, key: str) -> Iterable[int]:
        start = bisect.bisect_left(self.key_list, key)
        for position in range(start, len(self.keys)):
            if not self.key_list[position].startswith(key):
                break
            yield self.keys[position][1]

    def word_ids(self, words: list[str]) -> set[int]:
        """Entries whose description has, for every query word, a word starting with it."""
        query_words = list(dict.fromkeys(words))
        spans = []
        for word in query_words:
            start = bisect.bisect_left(self.vocabulary, word)
            end = bisect.bisect_left(self.vocabulary, word + "\U0010ffff", lo=start)
            if start == end:
                return set()
            spans.append(
                (sum(len(self.postings[v]) for v in self.vocabulary[start:end]), start, end)
            )
        # Collect candidates for the rarest query word only, then check the others against each
        # candidate's own words: cheap when that word is specific, as type-ahead words soon are.
        _, start, end = min(spans)
        matched: set[int] = set()
        for vocabulary_word in self.vocabulary[start:end]:
            matched.update(self.postings[vocabulary_word])
        if len(query_words) == 1:
            return matched
        return {
            index
            for index in matched
            if all(
                any(own.startswith(word) for own in self.entries[index].words)
                for word in query_words
            )
        }


class Catalogue:
    """Descriptions, hierarchy, validation and search for one code system.

    ICD-10-CM builds its in-memory index lazily, once, on first use (thread-safe). The other
    systems have no registry: `is_valid` is a format check, descriptions are "" with
    `description_source` "unavailable", and `search` can only echo a well-formed code.
    """

    def __init__(self, system: CodeSystem | str) -> None:
        self.system = CodeSystem(system)
        self._index: _Icd10cmIndex | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the ICD-10-CM index now (a few seconds), e.g. during service start-up, so the
        first lookup or search does not pay for it."""
        if self.system is CodeSystem.ICD10_CM:
            self._icd10cm()

    @property
    def description_source(self) -> str:
        return ICD10CM_SOURCE if self.system is CodeSystem.ICD10_CM else UNAVAILABLE

    def lookup(self, code: str) -> CodeInfo:
        """Everything known about `code` as written in any accepted form (`n44.8`, `N448`)."""
        if not code or not code.strip():
            return self._unknown("")
        normalised = self._normalize(code)
        if self.system is not CodeSystem.ICD10_CM:
            return self._lookup_by_format(normalised)
        index = self._icd10cm()
        position = index.by_code.get(normalised)
        if position is not None:
            return self._info(index.entries[position], normalised)
        stem = self._placeholder_stem(index, normalised)
        if stem is not None:
            return self._info(stem, normalised)
        return self._unknown(normalised)

    def is_valid(self, code: str) -> bool:
        """True when `code` is an assignable code: confirmed by the registry (not a chapter or
        block), or, for a system without a registry, well formed."""
        info = self.lookup(code)
        return info.valid is not False and info.kind == "code"

    def describe(self, code: str) -> str:
        """The description, or "" when none is known (callers then show the code alone)."""
        return self.lookup(code).description

    def validate(self, code: str) -> str:
        """The normalised code, or UnknownCodeError saying what to fix."""
        if not code or not code.strip():
            raise UnknownCodeError(code, self.system, "the code is empty")
        info = self.lookup(code)
        if info.kind != "code":
            examples = self._codes_under(info.code)
            raise UnknownCodeError(
                code,
                self.system,
                f"{info.code} is a {info.kind} ({info.description}), not a code; choose a code "
                f"within it, such as {', '.join(examples)}",
            )
        if info.valid is not False:
            return info.code
        raise UnknownCodeError(code, self.system, self._fix_hint(info.code))

    def search(self, query: str, limit: int = 20, *, codes_only: bool = False) -> list[CodeInfo]:
        """Type-ahead: the exact code, then codes starting with the query (case and dots
        ignored), then entries whose description has a word starting with each query word
        (case and accents ignored); shorter codes first within each group. `codes_only` leaves
        out ICD-10-CM chapters and blocks."""
        if limit <= 0 or not query.strip():
            return []
        if self.system is not CodeSystem.ICD10_CM:
            info = self.lookup(query)
            return [info] if info.valid is not False else []
        index = self._icd10cm()

        def eligible(ids: Iterable[int]) -> Iterable[int]:
            if not codes_only:
                return ids
            return (i for i in ids if index.entries[i].kind == "code")

        exact = index.by_code.get(self._normalize(query))
        words = _words(query)
        # Later groups are computed only while the earlier ones leave room.
        groups: list[Callable[[], Iterable[int]]] = [
            lambda: [] if exact is None else eligible([exact]),
            lambda: heapq.nsmallest(limit + 1, eligible(index.prefix_ids(compact(query)))),
            lambda: heapq.nsmallest(limit, eligible(index.word_ids(words))) if words else [],
        ]
        ranked: dict[int, None] = {}  # an insertion-ordered set of entry ids
        for group in groups:
            ranked.update(dict.fromkeys(group()))
            if len(ranked) >= limit:
                break
        entries = [index.entries[i] for i in list(ranked)[:limit]]
        return [self._info(entry, entry.code) for entry in entries]

    # --- internals -------------------------------------------------------------------------

    def _icd10cm(self) -> _Icd10cmIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = _Icd10cmIndex.build()
        return self._index

    def _normalize(self, code: str) -> str:
        # A block range (`e08-e13`) is normalised end by end; codes.normalize knows single codes.
        if self.system is CodeSystem.ICD10_CM and "-" in code:
            ends = code.split("-")
            if all(end.strip() for end in ends):
                return "-".join(normalize(end, self.system) for end in ends)
        return normalize(code, self.system)

    def _info(self, entry: _Entry, code: str) -> CodeInfo:
        return CodeInfo(
            code=code,
            system=self.system,
            description=entry.description,
            description_source=ICD10CM_SOURCE,
            valid=True,
            kind=entry.kind,
            # A placeholder-padded code (`S02.0XX`) still lacks its seventh character.
            is_billable=entry.is_leaf and code == entry.code,
            chapter=entry.chapter,
            block=entry.block if entry.kind != "chapter" else None,
            category=entry.category,
        )

    def _unknown(self, code: str) -> CodeInfo:
        return CodeInfo(
            code=code, system=self.system, description="", description_source=UNAVAILABLE,
            valid=False,
        )  # fmt: skip

    @staticmethod
    def _placeholder_stem(index: _Icd10cmIndex, code: str) -> _Entry | None:
        """The code that `code` pads with placeholder X's, when it is a prefix of a real code.

        CodiEsp writes seventh-character codes without their seventh character (`S02.0XX` for
        S02.0XXA/S02.0XXD/...). The X's carry no meaning, so the description is the stem's.
        """
        key = compact(code)
        if len(key) < 4 or not key.endswith("X") or not any(True for _ in index.prefix_ids(key)):
            return None
        position = index.by_code.get(normalize(key.rstrip("X"), CodeSystem.ICD10_CM))
        return None if position is None else index.entries[position]

    def _lookup_by_format(self, code: str) -> CodeInfo:
        pattern, _ = _FORMATS[self.system]
        well_formed = bool(pattern.fullmatch(code))
        chapter = category = None
        is_billable = None  # no registry says which full codes CMS accepts
        if well_formed and self.system is CodeSystem.ICD10_PCS:
            chapter = HierarchyNode(code[0], PCS_SECTIONS[code[0]])
            category = HierarchyNode(code[:3], "")  # the PCS table
            if len(code) < 7:
                is_billable = False
        elif well_formed:
            category = HierarchyNode(code.split(".")[0], "")
        return CodeInfo(
            code=code,
            system=self.system,
            description="",
            description_source=UNAVAILABLE,
            valid=None if well_formed else False,
            is_billable=is_billable,
            chapter=chapter,
            category=category,
        )

    def _codes_under(self, group: str, count: int = 5) -> list[str]:
        index = self._icd10cm()
        under = [
            other.code
            for other in index.entries
            if other.kind == "code"
            and len(other.key) == 3
            and (other.chapter.code == group or (other.block and other.block.code == group))
        ]
        return under[:count]

    def _fix_hint(self, code: str) -> str:
        if self.system is not CodeSystem.ICD10_CM:
            return f"expected {_FORMATS[self.system][1]}"
        index = self._icd10cm()
        written = compact(code)
        key = written.rstrip("X")
        # The longest known code the input starts with (placeholder X's aside) tells the coder
        # how far they got right; the input itself is unknown, so it is never that code.
        longest = len(key) if key != written else len(key) - 1
        for length in range(longest, 2, -1):
            position = index.by_code.get(normalize(key[:length], self.system))
            if position is None:
                continue
            parent = index.entries[position]
            below = [index.entries[i] for i in index.prefix_ids(parent.key) if i != position]
            # The next level down; seventh-character codes sit three characters below a
            # subcategory (S02.0 -> S02.0XXA), so "next" means the shortest codes below.
            shortest = min((len(other.key) for other in below), default=0)
            children = [other.code for other in below if len(other.key) == shortest]
            more = f"; codes under it: {', '.join(children[:6])}" if children else ""
            return (
                f"not in the {ICD10CM_SOURCE} release; the nearest known code is "
                f"{parent.code} ({parent.description}){more}"
            )
        return (
            "no ICD-10-CM code starts like this; a code is a letter, a digit, a letter or digit, "
            "then optionally a dot and up to four characters (e.g. E11.9); search to find one"
        )


def catalogue_for(system: CodeSystem | str) -> Catalogue:
    """The shared catalogue for `system` (one per process, so the index is built once)."""
    # Converted first: lru_cache keys "icd10cm" and CodeSystem.ICD10_CM apart.
    return _shared_catalogue(CodeSystem(system))


@lru_cache(maxsize=len(CodeSystem))
def _shared_catalogue(system: CodeSystem) -> Catalogue:
    return Catalogue(system)
