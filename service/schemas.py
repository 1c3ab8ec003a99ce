"""The API's request and response bodies (pydantic), with the examples shown at /docs.

Kept apart from the database tables (service/db/models.py). Limits that depend on settings (note
length, batch size) are checked in the routes, so they answer 413 rather than 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from service.crud import NoteRecord, ReviewStatus

Decision = Literal["accepted", "rejected", "added"]


def _storable(value: str) -> str:
    # Both would fail deep inside the tokenizer or PostgreSQL; say so here instead.
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000): remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "contains an unpaired surrogate, which is not valid Unicode: send valid UTF-8 text"
        ) from None
    return value


def _note_text(value: str) -> str:
    if not value.strip():
        raise ValueError("text is empty or only white space: send the note's text")
    # Zero-width characters, digits or symbols alone are not a note, yet the model would still
    # score them (and confidently): refuse them here. Letters of any script count.
    if not any(character.isalpha() for character in value):
        raise ValueError(
            "text has no letters in any script (only digits, punctuation, symbols or invisible "
            "characters): send the note's text"
        )
    return _storable(value)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty or only white space: send a name, or leave the field out")
    return value


NoteText = Annotated[str, AfterValidator(_note_text)]
CleanStr = Annotated[str, AfterValidator(_storable)]
Identifier = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_storable)]

_NOTE_EXAMPLE: dict[str, Any] = {
    "text": "Patient admitted with fever and productive cough; history of hypertension.",
    "note_id": "note-2024-000123",
    "encounter_id": "enc-98765",
    "top_k": 5,
}


class NoteIn(BaseModel):
    """One note to code. Highlights come back as offsets into `text` exactly as sent."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_NOTE_EXAMPLE]})

    text: NoteText = Field(
        description="the note's text; offsets in the answer count Unicode code points in it"
    )
    note_id: Identifier | None = Field(None, description="the EHR's id of the note")
    encounter_id: Identifier | None = Field(None, description="the EHR's id of the encounter")
    # Strict: "5", true and 2.0 are refused rather than silently read as a number.
    top_k: StrictInt | None = Field(
        None, ge=1, le=1000, description="codes to return, best first (default: a setting)"
    )

    def audit_record(self, *, top_k: int) -> NoteRecord:
        """What the audit row keeps of this note (`top_k`: the depth actually ranked)."""
        return NoteRecord(
            text=self.text, note_id=self.note_id, encounter_id=self.encounter_id, top_k=top_k
        )


class BatchIn(BaseModel):
    """Several notes in one call; each gets its own prediction id. All are recorded or none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "notes": [
                        _NOTE_EXAMPLE,
                        {"text": "Paciente con neumonía y fiebre.", "note_id": "note-124"},
                    ]
                }
            ]
        },
    )

    notes: list[NoteIn] = Field(min_length=1, description="the notes (limit: a setting)")


class HighlightOut(BaseModel):
    """Evidence for a code: [start, end) character offsets into the note's text."""

    start: int
    end: int
    text: str | None = Field(description="the highlighted text; null when the note was purged")
    weight: float = Field(
        description="rank of this item among the code's evidence: a lexicon match's precision in "
        "training notes, or an attention phrase's share of the code's attention"
    )
    source: Literal["lexicon", "attention"] = Field(
        default="attention",
        description="lexicon: a phrase that named the code in training notes; attention: where "
        "the network looked",
    )
    negated: bool = Field(default=False, description="inside a negation (e.g. 'niega', 'no')")
    hypothetical: bool = Field(
        default=False, description="inside an uncertainty ('sospecha de', 'rule out')"
    )
    family: bool = Field(
        default=False, description="about a relative ('madre con', 'family history of')"
    )


class CodeOut(BaseModel):
    code: str
    description: str
    score: float = Field(description="probability in [0, 1]")
    rank: int = Field(description="1 = best")
    above_threshold: bool = Field(description="score at or above the code's tuned threshold")
    threshold: float | None = Field(
        None,
        description="the code's tuned decision threshold; null for predictions recorded before "
        "thresholds were stored",
    )
    highlights: list[HighlightOut] = Field(
        description="evidence spans, heaviest first (empty beyond the model's exported top K)"
    )


class ModelRef(BaseModel):
    name: str
    version: str


_PREDICTION_EXAMPLE: dict[str, Any] = {
    "prediction_id": "3f2b8a34-5f0e-4d6c-9a51-2f3f0c7e1a10",
    "created_at": "2024-06-01T12:00:00.123000Z",
    "note_id": "note-2024-000123",
    "encounter_id": "enc-98765",
    "model": {"name": "plant-codiesp-d-en", "version": "1.0.0"},
    "codes": [
        {
            "code": "R50.9",
            "description": "Fever, unspecified",
            "score": 0.91,
            "rank": 1,
            "above_threshold": True,
            "threshold": 0.35,
            "highlights": [{"start": 23, "end": 28, "text": "fever", "weight": 0.62}],
        }
    ],
    "elapsed_ms": 7.4,
}


class PredictionOut(BaseModel):
    """A recorded prediction: returned only after it was committed to the audit log."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PREDICTION_EXAMPLE]})

    prediction_id: UUID
    created_at: datetime
    note_id: str | None
    encounter_id: str | None
    model: ModelRef
    codes: list[CodeOut]
    abstention: str | None = Field(
        None,
        description="why no code is above threshold although the model ranked codes (the note "
        "holds too little text the model knows); null when the model did not abstain",
    )
    elapsed_ms: float = Field(description="inference time for this call (the whole batch)")


class BatchOut(BaseModel):
    predictions: list[PredictionOut] = Field(description="in the order the notes were sent")


class FeedbackEventOut(BaseModel):
    id: int
    created_at: datetime
    coder: str = Field(description="the API key that recorded the decision: the audit identity")
    coder_id: str = Field(description="the display name sent with the feedback (else the key's)")
    code: str
    decision: Decision
    comment: str | None


class CurrentDecision(BaseModel):
    """The latest decision on one code: the current state of the review."""

    code: str
    decision: Decision
    coder: str = Field(description="the API key that recorded the decision")
    coder_id: str
    decided_at: datetime


class ReviewOut(BaseModel):
    """Where the review of one prediction stands. It is complete when every suggestion above
    its threshold has been accepted or rejected; only complete reviews are exported."""

    reviewed: bool = Field(description="the review is complete (status `complete`)")
    status: ReviewStatus = Field(
        description="unreviewed: no decision yet; in_progress: some suggestions above threshold "
        "are still undecided; complete: every one is decided"
    )
    undecided: list[str] = Field(
        description="suggestions above threshold with no decision yet, in rank order"
    )
    decisions: list[CurrentDecision]
    final_codes: list[str] = Field(
        description="accepted suggestions in rank order, then added codes; what export writes"
    )


class PredictionDetail(PredictionOut):
    """A prediction with its note, its feedback history and the current review state."""

    note_text: str | None = Field(description="null when text storage is off or it was purged")
    note_sha256: str
    note_chars: int
    client: str = Field(description="name of the API key that asked for the prediction")
    feedback: list[FeedbackEventOut] = Field(description="every event, oldest first")
    review: ReviewOut


class PredictionSummary(BaseModel):
    prediction_id: UUID
    created_at: datetime
    note_id: str | None
    encounter_id: str | None
    model: ModelRef
    note_chars: int
    codes_above_threshold: list[str]
    feedback_events: int
    reviewed: bool = Field(description="the review is complete (status `complete`)")
    review_status: ReviewStatus
    undecided: list[str] = Field(description="suggestions above threshold still undecided")


class PredictionPage(BaseModel):
    items: list[PredictionSummary]
    total: int = Field(description="predictions matching the filters")
    limit: int
    offset: int


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(min_length=1, max_length=20), AfterValidator(_storable)]
    decision: Decision = Field(
        description="accepted / rejected: a suggested (or earlier added) code; added: any "
        "catalogue code"
    )


class FeedbackIn(BaseModel):
    """A coder's decisions on one prediction; appended to its audit trail, never overwriting."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "coder_id": "coder-17",
                    "decisions": [
                        {"code": "R50.9", "decision": "accepted"},
                        {"code": "I10", "decision": "rejected"},
                        {"code": "J18.9", "decision": "added"},
                    ],
                    "comment": "pneumonia documented in the radiology section",
                    "undecided": "reject",
                }
            ]
        },
    )

    coder_id: Annotated[Identifier, AfterValidator(_not_blank)] | None = Field(
        None,
        description="a display name for the coder; the audit trail records the calling key's "
        "name as the coder whatever is sent here (default: that name)",
    )
    decisions: list[DecisionIn] = Field(
        default_factory=list,
        max_length=500,
        description="one decision per code; may be empty only when `undecided` is set",
    )
    comment: Annotated[str, Field(max_length=5000), AfterValidator(_storable)] | None = None
    final: bool = Field(
        True,
        description="true: this completes the review, so every suggestion above threshold must "
        "be decided (here, earlier, or by `undecided`), else 422 names the undecided ones; "
        "false: save progress, the note stays in the queue",
    )
    undecided: Literal["accept", "reject"] | None = Field(
        None,
        description="decide every suggestion above threshold left undecided after this "
        "request: accept or reject them all (recorded as ordinary decisions)",
    )

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackIn:
        if not self.decisions and self.undecided is None:
            raise ValueError(
                "decisions is empty: send at least one decision, or `undecided` "
                "('accept' or 'reject') to decide the rest"
            )
        return self


class FeedbackOut(BaseModel):
    prediction_id: UUID
    recorded: list[FeedbackEventOut] = Field(description="the events this call appended")
    review: ReviewOut


class HierarchyNodeOut(BaseModel):
    code: str
    description: str


class CodeInfoOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "R50.9",
                    "system": "icd10cm",
                    "description": "Fever, unspecified",
                    "description_source": "simple-icd-10-cm",
                    "valid": True,
                    "kind": "code",
                    "is_billable": True,
                    "chapter": {"code": "18", "description": "Symptoms, signs and ..."},
                    "block": {"code": "R50-R69", "description": "General symptoms and signs"},
                    "category": {"code": "R50", "description": "Fever of other and unknown ..."},
                    "in_model": True,
                    "train_count": 812,
                }
            ]
        }
    )

    code: str
    system: str
    description: str
    description_source: str
    valid: bool | None = Field(
        description="true: the registry confirms it; null: well formed, no registry to confirm"
    )
    kind: Literal["chapter", "block", "code"]
    is_billable: bool | None
    chapter: HierarchyNodeOut | None
    block: HierarchyNodeOut | None
    category: HierarchyNodeOut | None
    in_model: bool = Field(description="the served model can suggest this code")
    train_count: int | None = Field(description="training notes with this code, if in the model")


class CodeSearchOut(BaseModel):
    query: str
    results: list[CodeInfoOut]


class ModelCodeOut(BaseModel):
    code: str
    description: str
    threshold: float
    train_count: int


class ModelOut(BaseModel):
    name: str
    version: str
    kind: str
    format_version: int
    created_at: str
    code_system: str
    n_codes: int
    max_tokens: int
    top_k_export: int
    global_threshold: float
    dev_metrics: dict[str, float]
    corpus: dict[str, Any]
    training: dict[str, Any]
    config: dict[str, Any]
    package_versions: dict[str, str]
    graph_sha256: str
    tokenizer_sha256: str
    network_codes: int = Field(
        description="codes the network scores; the rest only the fused lexicon can propose"
    )
    precision: str = Field(
        "fp32", description="the graph's numeric precision: fp32, or int8 (plant-icd quantize)"
    )
    shortlist_size: int | None = Field(
        None,
        description="codes the attention decoder runs for per note (S; forced candidates come "
        "on top); null: every code is decoded",
    )
    fusion: dict[str, Any] | None = Field(
        None,
        description="the fused model beside the graph (lexicon, nearest notes, combiner): file "
        "checksums, combiner features, out-of-fold fitting report; null for the network alone",
    )
    codes: list[ModelCodeOut] | None = Field(
        None, description="every code with its threshold (only with include_codes=true)"
    )


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    ready: bool
    model: str = Field(description="loading | warming up | ready | failed: <reason>")
    database: str = Field(description="ok | unavailable: <reason>")


class ErrorOut(BaseModel):
    """Every error: what went wrong and what to do about it."""

    detail: str
    errors: list[dict[str, Any]] | None = Field(
        None, description="one entry per problem, when there are several"
    )
    request_id: str | None = Field(None, description="quote it when reporting a problem")
