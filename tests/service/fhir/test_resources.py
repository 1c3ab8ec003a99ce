"""Writing results as FHIR: the extensions carry every field of the JSON API's code and
highlight objects (new ones included), ids round-trip, and each code finds its system."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from model.catalogue import catalogue_for
from model.codes import CodeSystem
from service.fhir.resources import (
    CodedResult,
    Origin,
    code_system_of,
    coding_bundle,
    evidence_extension,
    parse_resource_id,
    resource_id,
    suggestion_extension,
)
from service.fhir.vocabulary import EVIDENCE_EXTENSION, SUGGESTION_EXTENSION
from service.schemas import CodeOut, HighlightOut, ModelRef

PREDICTION = uuid.UUID("3f2b8a34-5f0e-4d6c-9a51-2f3f0c7e1a10")


class FlaggedHighlight(HighlightOut):
    """A highlight with the fields the JSON API is gaining (evidence source, context flags)."""

    source: str
    negated: bool
    hypothetical: bool
    family: bool


def _fields(extension: dict[str, Any]) -> dict[str, Any]:
    return {
        sub["url"]: next(v for k, v in sub.items() if k.startswith("value"))
        for sub in extension["extension"]
    }


def test_every_highlight_field_reaches_the_evidence_extension() -> None:
    highlight = FlaggedHighlight(
        start=10,
        end=16,
        text="fiebre",
        weight=0.625,
        source="lexicon",
        negated=False,
        hypothetical=True,
        family=False,
    )
    extension = evidence_extension(highlight).model_dump(mode="json", exclude_none=True)
    assert extension["url"] == EVIDENCE_EXTENSION
    assert _fields(extension) == {
        "start": 10,
        "end": 16,
        "text": "fiebre",
        "weight": 0.625,
        "source": "lexicon",
        "negated": False,
        "hypothetical": True,
        "family": False,
    }
    typed = {sub["url"]: sub for sub in extension["extension"]}
    assert "valueBoolean" in typed["negated"] and "valueInteger" in typed["start"]


def test_the_suggestion_extension_leaves_out_what_is_unknown() -> None:
    code = CodeOut(
        code="R50.9",
        description="Fever",
        score=0.91,
        rank=1,
        above_threshold=True,
        threshold=None,  # predictions recorded before thresholds were stored
        highlights=[],
    )
    extension = suggestion_extension(code).model_dump(mode="json", exclude_none=True)
    assert extension["url"] == SUGGESTION_EXTENSION
    assert _fields(extension) == {"score": 0.91, "rank": 1, "aboveThreshold": True}


def test_resource_ids_round_trip() -> None:
    assert parse_resource_id(resource_id(PREDICTION, "R50.9")) == (PREDICTION, "R50.9")
    assert parse_resource_id("not-a-prediction-R50.9") is None
    assert parse_resource_id(f"{PREDICTION}-") is None
    assert len(resource_id(PREDICTION, "0DTJ0ZZ")) <= 64


def test_each_code_finds_its_system_in_a_model_of_both() -> None:
    both = [catalogue_for(CodeSystem.ICD10_CM), catalogue_for(CodeSystem.ICD10_PCS)]
    for catalogue in both:
        catalogue.load()
    assert code_system_of("R50.9", both) is CodeSystem.ICD10_CM
    assert code_system_of("0DTJ", both) is CodeSystem.ICD10_PCS
    assert code_system_of("BW03ZZZ", both) is CodeSystem.ICD10_PCS
    assert code_system_of("0DTJ", both[:1]) is CodeSystem.ICD10_CM  # one system: that one


def test_a_bundle_without_codes_still_validates() -> None:
    origin = Origin(
        prediction_id=PREDICTION,
        created_at=datetime(2026, 11, 30, 12, tzinfo=UTC),
        model=ModelRef(name="plant", version="1.0.0"),
        subject="Patient/1",
        encounter=None,
        document=None,
    )
    bundle = coding_bundle(origin, [], "http://testserver/fhir/r4", note=None)
    body = bundle.model_dump(mode="json", exclude_none=True)
    Bundle.model_validate(body)
    kinds = [entry["resource"]["resourceType"] for entry in body["entry"]]
    assert kinds == ["OperationOutcome", "Provenance"]
    assert body["entry"][1]["resource"]["target"] == [{"reference": body["entry"][0]["fullUrl"]}]
    # The same prediction gives the same Bundle: a replay is identical.
    assert coding_bundle(origin, [], "http://testserver/fhir/r4", note=None) == bundle


def test_a_coder_added_code_has_no_suggestion() -> None:
    origin = Origin(
        prediction_id=PREDICTION,
        created_at=datetime(2026, 11, 30, 12, tzinfo=UTC),
        model=ModelRef(name="plant", version="1.0.0"),
        subject=None,  # a JSON-API prediction: no patient reference was sent
        encounter="Encounter/9",
        document=None,
    )
    added = CodedResult("N44.8", "", CodeSystem.ICD10_CM, "confirmed", suggestion=None)
    body = coding_bundle(origin, [added], "http://x/fhir/r4", note=None).model_dump(
        mode="json", exclude_none=True
    )
    condition = body["entry"][0]["resource"]
    assert "extension" not in condition
    assert condition["subject"]["display"].startswith("not recorded")
    assert condition["code"] == {
        "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "N44.8"}],
        "text": "N44.8",
    }
