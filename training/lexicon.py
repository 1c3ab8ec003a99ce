"""Building the mention lexicon from labelled notes: the coders' evidence spans, their shorter
pieces and their discontinuous mentions, n-grams mined per code, and catalogue descriptions, each
(mention, code) weighted by its precision in the training notes (model/lexicon.py matches it at
serving time)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from model.lexicon import (
    Matcher,
    MentionLexicon,
    MentionLink,
    MentionTrie,
    SplitKey,
    SplitMentions,
)
from model.text import FUNCTION_WORDS, Word, lexicon_words, phrase_key
from training.corpora.base import Document, EvidenceSpan

Phrases = dict[tuple[str, ...], set[str]]
SplitPhrases = dict[SplitKey, set[str]]

# A link's weight is its precision in training notes, pulled towards PRIOR_WEIGHT as if
# PRIOR_NOTES more notes had been seen: a mention never matched in training keeps the prior.
PRIOR_WEIGHT = 0.25
PRIOR_NOTES = 1.0
# Mined n-grams: never start or end on a function word; at most this many words.
MAX_MINED_WORDS = 4
# Catalogue fragments naming more codes than this are too vague to propose any of them.
MAX_CODES_PER_FRAGMENT = 3
_CODE_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")
_FRAGMENT_BREAKS = (
    ",",
    " with ",
    " without ",
    " due to ",
    " in ",
    " (",
    " con ",
    " sin ",
    " debido a ",
    " en ",
)


def evidence_phrases(documents: Iterable[Document]) -> Phrases:
    """Each evidence span's text, folded, linked to its code."""
    phrases: Phrases = {}
    for document in documents:
        for span in document.spans:
            key = phrase_key(document.text[span.start : span.end])
            if key:
                phrases.setdefault(key, set()).add(span.code)
    return phrases


def split_phrases(documents: Iterable[Document]) -> SplitPhrases:
    """Each discontinuous evidence mention (spans sharing `part_of`) as its parts' words in text
    order, linked to its code; a mention with an empty part is left out."""
    phrases: SplitPhrases = {}
    for document in documents:
        mentions: dict[int, list[EvidenceSpan]] = {}
        for span in document.spans:
            if span.part_of is not None:
                mentions.setdefault(span.part_of, []).append(span)
        for parts in mentions.values():
            ordered = sorted(parts, key=lambda span: span.start)
            key = tuple(phrase_key(document.text[span.start : span.end]) for span in ordered)
            if len(key) > 1 and all(key):
                phrases.setdefault(key, set()).add(ordered[0].code)
    return phrases


def reference_word_shares(
    documents: Sequence[Document], note_words: Sequence[Sequence[Word]] | None = None
) -> dict[str, float]:
    """Per lexicon word, the share of its occurrences in the notes that lie inside an evidence
    span, smoothed by one occurrence outside (`parálisis` ~0.8, `periférica` ~0.1, `de` ~0.04);
    words under 0.01 are left out. `MentionLexicon.evidence_span` snaps matches with it.
    `note_words`: each document's `lexicon_words`, when already read."""
    if note_words is None:
        note_words = [lexicon_words(document.text) for document in documents]
    inside: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for document, words in zip(documents, note_words, strict=True):
        spans = sorted((span.start, span.end) for span in document.spans)
        for word in words:
            total[word.text] += 1
            # Spans are few per note: a linear scan is cheaper than an interval index.
            if any(start <= word.start and word.end <= end for start, end in spans):
                inside[word.text] += 1
    shares = {word: inside[word] / (total[word] + 1) for word in inside}
    return {word: round(share, 3) for word, share in shares.items() if share >= 0.01}


def partial_phrases(evidence: Phrases) -> Phrases:
    """Shorter pieces of the coders' phrases: each contiguous run of a phrase's words that starts
    and ends on a content word (`hepatitis` from `hepatitis cronica c`), linked to its codes."""
    phrases: Phrases = {}
    for key, codes in evidence.items():
        for first, token in enumerate(key):
            if not _content(token):
                continue
            for stop in range(first + 1, len(key) + 1):
                if (first, stop) != (0, len(key)) and _content(key[stop - 1]):
                    phrases.setdefault(key[first:stop], set()).update(codes)
    return {key: codes for key, codes in phrases.items() if key not in evidence}


def _content(token: str) -> bool:
    """Whether a phrase may start or end on `token`: no function word, number or short token."""
    return token not in FUNCTION_WORDS and len(token) >= 3 and not token.isdigit()


def _ngrams(text: str) -> set[tuple[str, ...]]:
    tokens = [word.text for word in lexicon_words(text)]
    grams: set[tuple[str, ...]] = set()
    for first, token in enumerate(tokens):
        if not _content(token):
            continue
        for stop in range(first + 1, min(first + MAX_MINED_WORDS, len(tokens)) + 1):
            if _content(tokens[stop - 1]):
                grams.add(tuple(tokens[first:stop]))
    return grams


def mined_phrases(
    documents: Sequence[Document],
    min_notes: int = 2,
    min_precision: float = 0.5,
    max_note_share: float = 0.2,
) -> Phrases:
    """N-grams that mostly occur in notes carrying one code: for corpora without evidence spans
    (and translations whose spans point into another language)."""
    grams_by_note = [_ngrams(document.text) for document in documents]
    note_frequency: Counter[tuple[str, ...]] = Counter()
    for grams in grams_by_note:
        note_frequency.update(grams)
    ceiling = max(min_notes, max_note_share * len(documents))
    useful = {g for g, n in note_frequency.items() if min_notes <= n <= ceiling}
    notes_by_code: dict[str, list[int]] = {}
    for index, document in enumerate(documents):
        for code in document.codes:
            notes_by_code.setdefault(code, []).append(index)
    phrases: Phrases = {}
    for code, notes in notes_by_code.items():
        if len(notes) < min_notes:
            continue
        together: Counter[tuple[str, ...]] = Counter()
        for note in notes:
            together.update(grams_by_note[note] & useful)
        for gram, count in together.items():
            if count >= min_notes and count / note_frequency[gram] >= min_precision:
                phrases.setdefault(gram, set()).add(code)
    return phrases


def description_fragments(description: str) -> set[tuple[str, ...]]:
    """The whole description and its head (the part before the first qualifier)."""
    keys = {phrase_key(description)}
    folded = " " + description.lower() + " "
    cut = min((folded.find(b) for b in _FRAGMENT_BREAKS if folded.find(b) > 0), default=-1)
    if cut > 0:
        keys.add(phrase_key(folded[:cut]))
    return {key for key in keys if key}


def catalogue_phrases(descriptions: Mapping[str, Sequence[str]]) -> Phrases:
    """Fragments of each code's descriptions; fragments shared by many codes are dropped."""
    phrases: Phrases = {}
    for code, texts in descriptions.items():
        for text in texts:
            for key in description_fragments(text):
                phrases.setdefault(key, set()).add(code)
    return {key: codes for key, codes in phrases.items() if len(codes) <= MAX_CODES_PER_FRAGMENT}


_Weighed = TypeVar("_Weighed", MentionTrie, SplitMentions)


def weigh_phrases(
    phrases: Mapping[Any, set[str]],
    documents: Sequence[Document],
    matcher: type[_Weighed],
    note_words: Sequence[Sequence[Word]],
) -> _Weighed:
    """`matcher` (a `MentionTrie`, or `SplitMentions` for split mentions) with each link
    weighted by precision: of the training notes where the mention matches, the share that carry
    the code, smoothed towards PRIOR_WEIGHT. `note_words`: each document's `lexicon_words`."""
    unweighed = matcher(
        {key: [MentionLink(code, 0.0, 0) for code in codes] for key, codes in phrases.items()}
    )
    notes_with: Counter[Any] = Counter()
    notes_with_code: Counter[tuple[Any, str]] = Counter()
    for document, words in zip(documents, note_words, strict=True):
        keys = {key for _, _, key in unweighed.spans(words)}
        notes_with.update(keys)
        gold = set(document.codes)
        notes_with_code.update((key, code) for key in keys for code in phrases[key] & gold)
    return matcher(
        {
            key: [
                MentionLink(
                    code,
                    (notes_with_code[(key, code)] + PRIOR_NOTES * PRIOR_WEIGHT)
                    / (notes_with[key] + PRIOR_NOTES),
                    notes_with[key],
                    notes_with_code[(key, code)],
                )
                for code in sorted(codes)
            ]
            for key, codes in phrases.items()
        }
    )


def build_lexicon(
    documents: Sequence[Document],
    *,
    evidence: bool = True,
    partial: bool = True,
    split: bool = True,
    mined: bool = True,
    catalogue: Phrases | None = None,
    snap: bool = True,
) -> MentionLexicon:
    """The lexicon of `documents`: evidence spans (where the corpus has them), mined n-grams and
    catalogue phrases (where a source exists), each weighted on `documents`; with `snap`, the
    reference words that evidence spans snap to (`reference_word_shares`)."""
    note_words = [lexicon_words(document.text) for document in documents]  # once per build
    tries: dict[str, Matcher] = {}
    reference_words: dict[str, float] = {}
    if evidence and any(document.spans for document in documents):
        spans = evidence_phrases(documents)
        tries["evidence"] = weigh_phrases(spans, documents, MentionTrie, note_words)
        if partial:
            pieces = partial_phrases(spans)
            tries["partial"] = weigh_phrases(pieces, documents, MentionTrie, note_words)
        discontinuous = split_phrases(documents) if split else {}
        if discontinuous:
            tries["split"] = weigh_phrases(discontinuous, documents, SplitMentions, note_words)
        reference_words = reference_word_shares(documents, note_words) if snap else {}
    if mined:
        grams = mined_phrases(documents)
        tries["mined"] = weigh_phrases(grams, documents, MentionTrie, note_words)
    if catalogue:
        tries["catalogue"] = weigh_phrases(catalogue, documents, MentionTrie, note_words)
    return MentionLexicon(tries, reference_words)


def icd10cm_descriptions(lang: str) -> dict[str, list[str]]:
    """ICD-10-CM descriptions per code in `lang`: English from simple-icd-10-cm (the CMS
    release), Spanish from the `cie` package's CIE-10 titles (WHO ICD-10 in Spanish, kept only
    where the code is also a valid ICD-10-CM code). Empty when no source exists for `lang`."""
    import simple_icd_10_cm as cm

    if lang == "en":
        return {
            code: [cm.get_description(code)]
            for code in cm.get_all_codes(True)
            if _CODE_SHAPE.match(code)  # not chapters ("1") or blocks ("A00-A09")
        }
    if lang != "es":
        return {}
    try:
        from cie.cie10 import CIECodes
    except ImportError:  # the train extra installs it; without it the lexicon has no catalogue
        return {}
    descriptions: dict[str, list[str]] = {}
    for raw_code, entry in CIECodes().tree.items():
        code = raw_code if len(raw_code) <= 3 else f"{raw_code[:3]}.{raw_code[3:]}"
        if cm.is_valid_item(code) and entry.get("description"):
            descriptions.setdefault(code, []).append(str(entry["description"]))
    return descriptions
