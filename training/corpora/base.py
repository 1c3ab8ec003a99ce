"""The one document record every corpus reader yields."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EvidenceSpan:
    """A code's evidence in the text: [start, end) character offsets; one mention may have parts."""

    code: str
    start: int
    end: int


@dataclass(frozen=True)
class Document:
    """A clinical note with its gold codes (normalised) and optional evidence spans.

    `codes` keeps the order first seen in the source and holds no duplicates.
    """

    id: str
    text: str
    codes: tuple[str, ...]
    spans: tuple[EvidenceSpan, ...] = field(default=())
