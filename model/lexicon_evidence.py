"""A code's lexicon evidence as a coder reads it: one item per span, best first, each with the
context flags of its match (what `FusedScorer` scores, the runtime shows and the evidence
benchmarks order by).
"""

from __future__ import annotations

from collections.abc import Collection

from model.fusion import NoteSignals
from model.prediction import Highlight

# Which lexicon source makes the better first evidence item (`lexicon_evidence`): the coders'
# own spans, whole or discontinuous (heaviest first between them), then catalogue titles, mined
# n-grams, and last pieces of coders' spans (too short to contain the coders' reference: on D-es
# dev 9% of them met the X rule as first item, mined 70%).
EVIDENCE_PRIORITY = {"split": 0, "evidence": 0, "catalogue": 1, "mined": 2, "partial": 3}


def lexicon_evidence(
    signals: NoteSignals, text: str, codes: Collection[str] | None = None
) -> dict[str, list[Highlight]]:
    """Per code (of `codes`, default every code a match names), the lexicon matches that
    name it, with their context flags, best first; one item per span (the same phrase from
    two sources keeps its best weight).

    Best first: phrases coders marked in training notes (whole, or in parts with other
    words between them, the span running from the first part to the last), then catalogue
    titles, then mined n-grams (words that co-occur with the code, such as a section
    heading, are weaker evidence however precise), then pieces of coders' phrases (too short
    to hold the whole reference); heaviest first within each, then in text order."""
    best: dict[str, dict[tuple[int, int], Highlight]] = {}
    sources = span_sources(signals, codes)
    for match, flags, key in zip(
        signals.matches, signals.flags, signals.evidence_spans(), strict=True
    ):
        for link in match.links:
            if codes is not None and link.code not in codes:
                continue  # a response shows the top codes; most matches name none of them
            items = best.setdefault(link.code, {})
            if key in items and items[key].weight >= link.weight:
                continue
            items[key] = Highlight(
                start=key[0],
                end=key[1],
                text=text[key[0] : key[1]],
                weight=link.weight,
                source="lexicon",
                negated=flags.negated,
                hypothetical=flags.hypothetical,
                family=flags.family,
            )
    ordered: dict[str, list[Highlight]] = {}
    for code, items in best.items():
        ranked = sorted(
            (evidence_rank(sources[(code, *key)]), -item.weight, item.start, item.end, item)
            for key, item in items.items()
        )
        ordered[code] = [item for *_, item in ranked]
    return ordered


def evidence_rank(source: str) -> int:
    return EVIDENCE_PRIORITY.get(source, len(EVIDENCE_PRIORITY))


def span_sources(
    signals: NoteSignals, codes: Collection[str] | None = None
) -> dict[tuple[str, int, int], str]:
    """(code, start, end) -> the lexicon source an evidence item ranks by
    (`lexicon_evidence`): the best, by EVIDENCE_PRIORITY, of the sources whose matches show
    that span for that code; only codes in `codes` when given."""
    sources: dict[tuple[str, int, int], str] = {}
    for match, (start, end) in zip(signals.matches, signals.evidence_spans(), strict=True):
        for link in match.links:
            if codes is not None and link.code not in codes:
                continue
            key = (link.code, start, end)
            if key not in sources or evidence_rank(match.source) < evidence_rank(sources[key]):
                sources[key] = match.source
    return sources
