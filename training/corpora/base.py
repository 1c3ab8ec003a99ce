"""The one document record every corpus reader yields."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EvidenceSpan:
    """A code's evidence in the text: [start, end) character offsets; one mention may have parts.

    The parts of one discontinuous mention share `part_of` (a number unique within the note);
    a whole mention has None."""

    code: str
    start: int
    end: int
    part_of: int | None = None


@dataclass(frozen=True)
class EvidenceReference:
    """One coder's evidence for one code in one note: a CodiEsp X row, kept whole.

    `parts` are [start, end) character offsets into the note's original (Spanish) text, in the
    order the coder wrote them; a discontinuous mention has several and they are not always in
    text order. `label` is "D" (diagnosis) or "P" (procedure); `code` is normalised; `text` is
    the reference as the annotation file spells it.
    """

    note_id: str
    label: str
    code: str
    parts: tuple[tuple[int, int], ...]
    text: str

    @property
    def start(self) -> int:
        """Where the whole reference begins: its earliest part's start."""
        return min(start for start, _ in self.parts)

    @property
    def end(self) -> int:
        """Where the whole reference ends: its latest part's end."""
        return max(end for _, end in self.parts)


@dataclass(frozen=True)
class Document:
    """A clinical note with its gold codes (normalised) and optional evidence spans.

    `codes` keeps the order first seen in the source and holds no duplicates.
    """

    id: str
    text: str
    codes: tuple[str, ...]
    spans: tuple[EvidenceSpan, ...] = field(default=())
