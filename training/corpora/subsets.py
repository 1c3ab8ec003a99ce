"""Label subsets: the k most frequent codes of a corpus, and documents restricted to a code set.

The "top-50" setting of MIMIC benchmarks (CAML, Mullenbach et al. 2018) is built from these;
ties are broken by code so the subset never depends on input order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable

from training.corpora.base import Document


def most_frequent_codes(documents: Iterable[Document], k: int) -> list[str]:
    """The `k` codes on the most documents, most frequent first, ties in code order."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    counts = Counter(code for document in documents for code in document.codes)
    ranked = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    return [code for code, _ in ranked[:k]]


def restrict_codes(
    documents: Iterable[Document], codes: Collection[str], *, keep_empty: bool = False
) -> list[Document]:
    """Documents with only the codes (and spans) in `codes`; those left with none are dropped
    unless `keep_empty`, as CAML drops admissions without a top-50 code."""
    kept = frozenset(codes)
    restricted: list[Document] = []
    for document in documents:
        doc_codes = tuple(code for code in document.codes if code in kept)
        if not doc_codes and not keep_empty:
            continue
        spans = tuple(span for span in document.spans if span.code in kept)
        restricted.append(Document(document.id, document.text, doc_codes, spans))
    return restricted


def top_k_codes(
    documents: Iterable[Document], k: int, *, keep_empty: bool = False
) -> list[Document]:
    """`documents` restricted to their own `k` most frequent codes.

    To give dev/test the training label set, use `most_frequent_codes` on the training split
    and `restrict_codes` on the others instead.
    """
    materialised = list(documents)
    return restrict_codes(materialised, most_frequent_codes(materialised, k), keep_empty=keep_empty)
