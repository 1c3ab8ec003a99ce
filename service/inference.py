"""The served model: the ONNX predictor, its readiness, bounded concurrency and its code catalogues.

Inference runs on worker threads (never on the event loop), at most `max_concurrent_inferences`
calls at once, each over at most `inference_token_budget` tokens; a request waits for a slot per
chunk, and past `max_tokens_in_flight` tokens admitted new requests get 503. Codes are checked
against the catalogue of each code system the bundle declares (`icd10cm`, or several joined by
`+`, e.g. `icd10cm+icd10pcs`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import anyio.to_thread

from model.catalogue import SYSTEM_LABELS, Catalogue, CodeInfo, UnknownCodeError, catalogue_for
from model.codes import compact
from model.prediction import CodePrediction
from model.runtime import OnnxPredictor
from model.tokenizer import NoteTokenizer
from service.core.metrics import Metrics


class InferenceOverloadedError(RuntimeError):
    """More note tokens are waiting for inference than the service admits; retry later."""


class CodeRejectedError(ValueError):
    """A code no catalogue of the bundle's code systems accepts; the message says what to fix.

    `reasons` holds one (system label, hint) per catalogue; the message names the code once.
    """

    def __init__(self, code: str, reasons: Sequence[tuple[str, str]]) -> None:
        self.code = code
        self.reasons = list(reasons)
        if len(self.reasons) == 1:
            ((label, hint),) = self.reasons
            message = f"{code!r} is not a valid {label} code: {hint}"
        else:
            why = "; ".join(f"{label}: {hint}" for label, hint in self.reasons)
            message = f"{code!r} is not a valid code in any of the model's code systems ({why})"
        super().__init__(message)


@dataclass(frozen=True)
class InferenceResult:
    predictions: list[list[CodePrediction]]
    elapsed_ms: float
    # Per note: why no code is above threshold (too little text the model knows), or None.
    abstentions: list[str | None]


def _is_known_word(tokenizer: NoteTokenizer, token_id: int, piece: str) -> bool:
    # Punctuation, digits and unknown pieces (<unk>, e.g. a script the tokenizer never saw)
    # carry no clinical evidence.
    return token_id != tokenizer.unk_id and any(ch.isalpha() for ch in piece)


def known_word_tokens(predictor: OnnxPredictor, texts: Sequence[str]) -> list[int]:
    """Per note, the tokens the graph reads that the vocabulary knows and that hold a letter.

    A note made only of punctuation, digits and unknown pieces is not one the model can code.
    """
    tokenizer = predictor.tokenizer
    counts = []
    notes = tokenizer.encode_batch(texts, max_tokens=predictor.max_tokens)
    for text, note in zip(texts, notes, strict=True):
        spans = zip(note.ids.tolist(), note.offsets.tolist(), strict=True)
        counts.append(
            sum(
                1
                for token_id, (start, end) in spans
                if _is_known_word(tokenizer, token_id, text[start:end])
            )
        )
    return counts


# The abstention check reads this much of a note first: nearly every note shows
# `min_note_tokens` known words in it, and only one that does not is tokenized whole.
KNOWN_WORDS_PREFIX_CHARS = 300


def shows_known_words(predictor: OnnxPredictor, text: str, floor: int) -> bool:
    """True when the first KNOWN_WORDS_PREFIX_CHARS characters of `text`, cut at white space,
    already hold `floor` known word tokens (False: not shown there; count the whole note).

    Cut just before a white-space character, the prefix's tokens are the note's first tokens:
    every pre-tokenizer the bundles use (white space and punctuation splits, byte-level) ends a
    piece at white space, and the normalizer works per character. So a prefix with `floor` known
    word tokens among its first max_tokens means the note has them too.
    """
    cut = (
        text.rfind(" ", 0, KNOWN_WORDS_PREFIX_CHARS)
        if len(text) > KNOWN_WORDS_PREFIX_CHARS
        else len(text)
    )
    if cut <= 0:
        return False
    tokenizer = predictor.tokenizer
    note = tokenizer.encode(text[:cut], max_tokens=predictor.max_tokens)
    found = 0
    for token_id, (start, end) in zip(note.ids.tolist(), note.offsets.tolist(), strict=True):
        found += _is_known_word(tokenizer, token_id, text[start:end])
        if found >= floor:
            return True
    return False


def abstain_below(
    predictions: list[list[CodePrediction]], token_counts: Sequence[int], floor: int
) -> tuple[list[list[CodePrediction]], list[str | None]]:
    """No code above threshold for notes with fewer than `floor` known word tokens, and why."""
    kept: list[list[CodePrediction]] = []
    reasons: list[str | None] = []
    for ranked, count in zip(predictions, token_counts, strict=True):
        if count >= floor:
            kept.append(ranked)
            reasons.append(None)
            continue
        kept.append([dataclasses.replace(code, above_threshold=False) for code in ranked])
        reasons.append(
            f"the note holds {count} word token(s) the model knows; at least {floor} are "
            "needed to suggest codes, so none is above threshold (the ranking is for reference "
            "only): send the note's full text"
        )
    return kept, reasons


class InferenceService:
    """Wraps one loaded `OnnxPredictor` for the service."""

    def __init__(
        self,
        predictor: OnnxPredictor,
        *,
        max_concurrent: int,
        metrics: Metrics,
        min_note_tokens: int = 0,
        token_budget: int = 8192,
        max_tokens_in_flight: int = 262_144,
    ) -> None:
        self.predictor = predictor
        self.metrics = metrics
        self.min_note_tokens = min_note_tokens
        self.token_budget = token_budget
        self.max_tokens_in_flight = max_tokens_in_flight
        self.tokens_in_flight = 0
        self.code_system = predictor.metadata.code_system
        self.catalogues: list[Catalogue] = [
            catalogue_for(system) for system in predictor.metadata.code_systems
        ]
        counts = predictor.metadata.train_code_counts
        self._model_codes = {compact(code): code for code in predictor.codes}
        self._train_counts = {
            compact(code): int(n) for code, n in zip(predictor.codes, counts, strict=True)
        }
        self._descriptions = {
            compact(code): description
            for code, description in zip(predictor.codes, predictor.descriptions, strict=True)
        }
        self._thresholds = {
            compact(code): float(threshold)
            for code, threshold in zip(predictor.codes, predictor.thresholds, strict=True)
        }
        self._slots = anyio.Semaphore(max_concurrent)
        self.warm_up_error: str | None = None
        self.catalogues_loaded = False

    # -- readiness ------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """One real inference, then the catalogue indexes; blocking (run it on a thread)."""
        self.predictor.warm_up()
        for catalogue in self.catalogues:
            catalogue.load()
        self.catalogues_loaded = True

    def is_ready(self) -> bool:
        return self.predictor.is_ready() and self.catalogues_loaded

    @property
    def state(self) -> str:
        if self.warm_up_error is not None:
            return f"failed: {self.warm_up_error}"
        return "ready" if self.is_ready() else "warming up"

    # -- inference ------------------------------------------------------------------------------

    def token_cost(self, text: str) -> int:
        """An upper bound on the tokens the graph reads of `text`: every token covers at least
        one character, and no note is read past the bundle's max_tokens."""
        return max(1, min(len(text), self.predictor.max_tokens))

    def chunks(self, texts: Sequence[str]) -> list[list[int]]:
        """Note indices per inference call: consecutive notes of at most `token_budget`
        estimated tokens together (a longer note goes alone)."""
        chunks: list[list[int]] = []
        current: list[int] = []
        used = 0
        for index, text in enumerate(texts):
            cost = self.token_cost(text)
            if current and used + cost > self.token_budget:
                chunks.append(current)
                current, used = [], 0
            current.append(index)
            used += cost
        if current:
            chunks.append(current)
        return chunks

    def _admit(self, cost: int) -> None:
        """Count `cost` tokens in flight, or InferenceOverloadedError when that would pass the
        bound (a request larger than the bound alone is admitted only into an empty queue)."""
        if self.tokens_in_flight and self.tokens_in_flight + cost > self.max_tokens_in_flight:
            self.metrics.inference_rejected.inc()
            raise InferenceOverloadedError(
                f"the inference queue is full ({self.tokens_in_flight} of "
                f"{self.max_tokens_in_flight} tokens in flight)"
            )
        self.tokens_in_flight += cost
        self.metrics.tokens_in_flight.set(self.tokens_in_flight)

    def _release(self, cost: int) -> None:
        self.tokens_in_flight -= cost
        self.metrics.tokens_in_flight.set(self.tokens_in_flight)

    async def predict(self, texts: Sequence[str], top_k: int) -> InferenceResult:
        """Ranked codes per note. Memory is bounded twice: the notes admitted at once (503 past
        `max_tokens_in_flight`) and the tokens of one inference call (`token_budget`).

        A request runs as chunks of at most `token_budget` tokens, each taking an inference slot
        in turn; slots are handed out first come, first served per chunk, so a short note waits
        for at most one chunk of a large batch, not for the whole batch.
        """
        cost = sum(self.token_cost(text) for text in texts)
        self._admit(cost)
        predictions: list[list[CodePrediction]] = [[] for _ in texts]
        elapsed = 0.0
        try:
            for chunk in self.chunks(texts):
                queued = time.perf_counter()
                async with self._slots:
                    started = time.perf_counter()
                    self.metrics.inference_queue.observe(started - queued)
                    answered = await anyio.to_thread.run_sync(
                        self.predictor.predict, [texts[i] for i in chunk], top_k
                    )
                    elapsed += time.perf_counter() - started
                for index, ranked in zip(chunk, answered, strict=True):
                    predictions[index] = ranked
        finally:
            self._release(cost)
        abstentions: list[str | None] = [None] * len(predictions)
        if self.min_note_tokens > 0:
            predictions, abstentions = await self._abstain(texts, predictions)
        self.metrics.inference_latency.observe(elapsed)
        self.metrics.batch_size.observe(len(texts))
        for ranked in predictions:
            self.metrics.codes_per_note.observe(sum(code.above_threshold for code in ranked))
        return InferenceResult(predictions, elapsed * 1000.0, abstentions)

    async def _abstain(
        self, texts: Sequence[str], predictions: list[list[CodePrediction]]
    ) -> tuple[list[list[CodePrediction]], list[str | None]]:
        """`abstain_below` for the notes; a note whose first characters show enough known words
        is decided on the event loop (a short read), only the others are counted whole on a
        worker thread."""
        floor = self.min_note_tokens
        counts = [floor if shows_known_words(self.predictor, text, floor) else -1 for text in texts]
        unsure = [index for index, count in enumerate(counts) if count < 0]
        if unsure:
            whole = await anyio.to_thread.run_sync(
                known_word_tokens, self.predictor, [texts[i] for i in unsure]
            )
            for index, count in zip(unsure, whole, strict=True):
                counts[index] = count
        return abstain_below(predictions, counts, floor)

    # -- codes ----------------------------------------------------------------------------------

    def model_code(self, code: str) -> str | None:
        """The bundle's spelling of `code` when the model scores it (case and dots ignored)."""
        return self._model_codes.get(compact(code))

    def train_count(self, code: str) -> int | None:
        return self._train_counts.get(compact(code))

    def threshold(self, code: str) -> float | None:
        """The decision threshold the model applies to `code` (None: not a model code)."""
        return self._thresholds.get(compact(code))

    def model_description(self, code: str) -> str | None:
        return self._descriptions.get(compact(code))

    def validate_code(self, code: str) -> str:
        """The normalised code if the model or a catalogue knows it, else CodeRejectedError."""
        known = self.model_code(code)
        if known is not None:
            return known
        reasons: list[tuple[str, str]] = []
        for catalogue in self.catalogues:
            label = SYSTEM_LABELS[catalogue.system]
            try:
                return catalogue.validate(code)
            except UnknownCodeError as error:
                reasons.append((label, error.hint))
            except ValueError as error:  # normalisation of something that is not a code
                reasons.append((label, str(error)))
        raise CodeRejectedError(code, reasons)

    def lookup(self, code: str) -> CodeInfo | None:
        """The first catalogue entry for `code` that is not known to be invalid."""
        fallback: CodeInfo | None = None
        for catalogue in self.catalogues:
            try:
                info = catalogue.lookup(code)
            except ValueError:
                continue
            if info.valid is not False:
                return info
            fallback = fallback or info
        if fallback is not None and self.model_code(code) is not None:
            return fallback
        return None

    def search(self, query: str, limit: int) -> list[CodeInfo]:
        results: list[CodeInfo] = []
        for catalogue in self.catalogues:
            results.extend(catalogue.search(query, limit=limit - len(results)))
            if len(results) >= limit:
                break
        return results
