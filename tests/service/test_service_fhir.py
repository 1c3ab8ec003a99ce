"""The FHIR R4 interface: $code on a real CodiEsp dev note (base64 in two charsets, and the
text form) answers a Bundle that validates against the fhir.resources models, with the JSON
API's codes and offsets; the prediction is in the audit log with its references; after review
the Condition search returns confirmed and refuted; bad FHIR is an OperationOutcome naming the
path; keys, roles, content negotiation and Idempotency-Key work as on the JSON API."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.operationoutcome import OperationOutcome

from service.core.config import Settings
from service.fhir.vocabulary import (
    CONDITION_VERIFICATION_SYSTEM,
    EVIDENCE_EXTENSION,
    NOTE_TEXT_EXTENSION,
    SUGGESTION_EXTENSION,
    VERIFICATION_EXTENSION,
)
from tests.corpus_location import REAL_CODIESP, missing_codiesp_reason
from tests.model.bundle_factory import DEFAULT_CODES, build_tiny_bundle
from tests.service.service_testing import Service, headers, running_service

CODE = "/fhir/r4/DocumentReference/$code"
PATIENT = "Patient/p-4711"
ENCOUNTER = "Encounter/e-0815"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
# Per code (DEFAULT_CODES order): R50.9, R05 and R07.9 are above threshold for nearly any
# note, the others only when their words dominate it: three suggestions to decide.
FHIR_THRESHOLDS = (0.1, 0.1, 0.9, 0.9, 0.1, 0.9)
PCS_CODE = "0DTJ"  # CodiEsp's four-character partial ICD-10-PCS code (resection of appendix)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def codiesp_note() -> tuple[str, str]:
    """(id, Spanish text) of the first CodiEsp dev note: accents make the charset matter."""
    from training.corpora.codiesp import iter_codiesp

    if REAL_CODIESP is None:
        pytest.skip(f"needs a real CodiEsp dev note: {missing_codiesp_reason()}")
    document = next(iter_codiesp(REAL_CODIESP, "dev", lang="es", codes="D"))
    assert not document.text.isascii()
    return document.id, document.text


@pytest.fixture(scope="module")
def fhir_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle with several suggestions above threshold, reading whole CodiEsp notes."""
    return build_tiny_bundle(
        tmp_path_factory.mktemp("fhir") / "bundle",
        per_code_thresholds=FHIR_THRESHOLDS,
        max_tokens=512,
    )


@pytest.fixture
def fhir_service(
    make_settings: Callable[..., Settings], database_url: str, fhir_bundle_dir: Path
) -> Iterator[Service]:
    with running_service(make_settings(database_url, bundle_dir=fhir_bundle_dir)) as started:
        yield started


@pytest.fixture
def sqlite_fhir_service(
    make_settings: Callable[..., Settings], sqlite_url: str, fhir_bundle_dir: Path
) -> Iterator[Service]:
    with running_service(make_settings(sqlite_url, bundle_dir=fhir_bundle_dir)) as started:
        yield started


# -- helpers ------------------------------------------------------------------------------------


def document_reference(
    text: str,
    *,
    form: str = "base64",
    charset: str = "utf-8",
    document_id: str = "codiesp-dev-1",
    subject: str | None = PATIENT,
    encounter: str | None = ENCOUNTER,
) -> dict[str, Any]:
    attachment: dict[str, Any] = {"contentType": f"text/plain; charset={charset}"}
    if form == "base64":
        attachment["data"] = base64.b64encode(text.encode(charset)).decode("ascii")
    else:
        attachment["extension"] = [{"url": NOTE_TEXT_EXTENSION, "valueString": text}]
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": document_id,
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
        "content": [{"attachment": attachment}],
    }
    if subject is not None:
        resource["subject"] = {"reference": subject}
    if encounter is not None:
        resource["context"] = {"encounter": [{"reference": encounter}]}
    return resource


def post_fhir(service: Service, resource: Any, role: str = "ehr", **extra_headers: str) -> Any:
    return service.http.post(
        CODE,
        json=resource,
        headers={
            **headers(role),
            "Content-Type": "application/fhir+json",
            **extra_headers,
        },
    )


def valid_bundle(body: dict[str, Any]) -> Bundle:
    """The Bundle as the fhir.resources models read it: every entry by its own class."""
    bundle = Bundle.model_validate(body)
    for entry in body.get("entry", []):
        resource_type = entry["resource"]["resourceType"]
        from fhir.resources.R4B import get_fhir_model_class

        get_fhir_model_class(resource_type).model_validate(entry["resource"])
    return bundle


def resources(body: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        entry["resource"]
        for entry in body.get("entry", [])
        if entry["resource"]["resourceType"] == resource_type
    ]


def _value(extension: dict[str, Any]) -> Any:
    return next(value for key, value in extension.items() if key.startswith("value"))


def extension_fields(resource: dict[str, Any], url: str) -> list[dict[str, Any]]:
    """Each complex extension at `url` as {sub-extension url: value}."""
    return [
        {sub["url"]: _value(sub) for sub in extension["extension"]}
        for extension in resource.get("extension", [])
        if extension["url"] == url
    ]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def json_highlight(highlight: dict[str, Any]) -> dict[str, Any]:
    return {camel(key): value for key, value in highlight.items() if value not in (None, "")}


def verification(resource: dict[str, Any]) -> str:
    coding = resource["verificationStatus"]["coding"][0]
    assert coding["system"] == CONDITION_VERIFICATION_SYSTEM
    return str(coding["code"])


def issue_paths(response: Any) -> list[str]:
    body = response.json()
    OperationOutcome.model_validate(body)
    assert response.headers["content-type"].startswith("application/fhir+json")
    return [
        path
        for issue in body["issue"]
        for path in issue.get("expression", issue.get("location", []))
    ]


# -- $code --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "charset"),
    [("base64", "utf-8"), ("base64", "iso-8859-1"), ("text", "utf-8")],
    ids=["base64-utf8", "base64-latin1", "text"],
)
def test_code_answers_the_json_apis_codes_and_offsets(
    fhir_service: Service, codiesp_note: tuple[str, str], form: str, charset: str
) -> None:
    note_id, text = codiesp_note
    answer = post_fhir(fhir_service, document_reference(text, form=form, charset=charset))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/fhir+json; charset=utf-8"
    body = answer.json()
    bundle = valid_bundle(body)
    assert bundle.type == "collection"

    same_note = fhir_service.predict(text, encounter_id=ENCOUNTER)
    expected = [code for code in same_note["codes"] if code["above_threshold"]]
    conditions = resources(body, "Condition")
    assert expected, "the review bundle should suggest codes for a CodiEsp note"
    assert [c["code"]["coding"][0]["code"] for c in conditions] == [e["code"] for e in expected]
    for condition, code in zip(conditions, expected, strict=True):
        assert condition["code"]["coding"][0]["system"] == ICD10CM
        assert verification(condition) == "unconfirmed"
        assert condition["subject"] == {"reference": PATIENT}
        assert condition["encounter"] == {"reference": ENCOUNTER}
        assert condition["evidence"] == [
            {"detail": [{"reference": "DocumentReference/codiesp-dev-1"}]}
        ]
        (suggestion,) = extension_fields(condition, SUGGESTION_EXTENSION)
        assert suggestion["score"] == pytest.approx(code["score"], rel=1e-12)
        assert suggestion == {
            "score": suggestion["score"],
            "rank": code["rank"],
            "aboveThreshold": True,
            "threshold": pytest.approx(code["threshold"]),
        }
        evidence = extension_fields(condition, EVIDENCE_EXTENSION)
        assert evidence == [json_highlight(h) for h in code["highlights"]]
        for span in evidence:  # offsets into the attachment's text, as decoded
            assert text[span["start"] : span["end"]] == span["text"]
    assert any(extension_fields(c, EVIDENCE_EXTENSION) for c in conditions)

    (provenance,) = resources(body, "Provenance")
    assert provenance["agent"][0]["who"]["reference"] == "#model"
    model = provenance["contained"][0]
    assert model["deviceName"][0]["name"] == same_note["model"]["name"]
    assert model["version"][0]["value"] == same_note["model"]["version"]
    assert provenance["entity"] == [
        {"role": "source", "what": {"reference": "DocumentReference/codiesp-dev-1"}}
    ]
    assert sorted(target["reference"] for target in provenance["target"]) == sorted(
        f"Condition/{c['id']}" for c in conditions
    )
    assert body["identifier"]["value"] == f"urn:uuid:{provenance['id']}"
    assert note_id  # the corpus note this was made from


def test_the_prediction_is_audited_and_reviewed_through_fhir(
    fhir_service: Service, codiesp_note: tuple[str, str]
) -> None:
    _, text = codiesp_note
    body = post_fhir(fhir_service, document_reference(text)).json()
    (provenance,) = resources(body, "Provenance")
    prediction_id = provenance["id"]
    with fhir_service.engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT note_id, encounter_id, subject_reference, client, note_chars "
                "FROM predictions WHERE id = :id"
            ),
            {"id": prediction_id},
        ).one()
    assert tuple(row) == (
        "DocumentReference/codiesp-dev-1",
        ENCOUNTER,
        PATIENT,
        "ehr-client",
        len(text),
    )
    # It is in the coders' queue like any prediction.
    queue = fhir_service.http.get(
        "/v1/predictions", params={"encounter_id": ENCOUNTER}, headers=headers("coder")
    ).json()
    assert [item["prediction_id"] for item in queue["items"]] == [prediction_id]

    suggested = [c["code"]["coding"][0]["code"] for c in resources(body, "Condition")]
    assert len(suggested) == 3
    accepted, rejected, undecided = suggested
    progress = fhir_service.feedback(
        prediction_id,
        (accepted, "accepted"),
        (rejected, "rejected"),
        ("N44.8", "added"),
        final=False,
    )
    assert progress.status_code == 201, progress.text

    for search in ({"encounter": ENCOUNTER}, {"encounter": "e-0815"}, {"patient": "p-4711"}):
        found = fhir_service.http.get("/fhir/r4/Condition", params=search, headers=headers("ehr"))
        assert found.status_code == 200, found.text
        bundle = found.json()
        assert valid_bundle(bundle).type == "searchset"
        statuses = {
            c["code"]["coding"][0]["code"]: verification(c) for c in resources(bundle, "Condition")
        }
        assert statuses == {
            accepted: "confirmed",
            rejected: "refuted",
            undecided: "unconfirmed",
            "N44.8": "confirmed",
        }
        assert bundle["total"] == 4
    added = resources(bundle, "Condition")[-1]
    assert added["code"]["coding"][0]["system"] == ICD10CM
    assert "extension" not in added  # a coder's code: no score, no evidence

    done = fhir_service.feedback(prediction_id, (undecided, "rejected"))
    assert done.status_code == 201, done.text
    confirmed = fhir_service.http.get(
        "/fhir/r4/Condition",
        params={"prediction": prediction_id, "verification-status": "confirmed"},
        headers=headers("coder"),
    ).json()
    assert rejected not in {
        c["code"]["coding"][0]["code"] for c in resources(confirmed, "Condition")
    }
    assert accepted in {c["code"]["coding"][0]["code"] for c in resources(confirmed, "Condition")}

    read = fhir_service.http.get(
        f"/fhir/r4/Condition/{prediction_id}-{rejected}", headers=headers("ehr")
    )
    assert read.status_code == 200, read.text
    Condition.model_validate(read.json())
    assert verification(read.json()) == "refuted"
    missing = fhir_service.http.get(
        f"/fhir/r4/Condition/{prediction_id}-Z99.9", headers=headers("ehr")
    )
    assert missing.status_code == 404
    OperationOutcome.model_validate(missing.json())


def test_procedure_codes_are_procedures(
    make_settings: Callable[..., Settings], sqlite_url: str, tmp_path: Path
) -> None:
    """A model of diagnoses and procedures: its ICD-10-PCS codes come back as Procedures."""
    bundle_dir = build_tiny_bundle(
        tmp_path / "dp-bundle",
        codes=[*DEFAULT_CODES, PCS_CODE],
        per_code_thresholds=(*FHIR_THRESHOLDS, 0.01),
        code_system="icd10cm+icd10pcs",
    )
    settings = make_settings(sqlite_url, bundle_dir=bundle_dir)
    with running_service(settings) as service:
        answer = post_fhir(
            service, document_reference("Paciente con fiebre y tos; apendicectomía.")
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        valid_bundle(body)
        (procedure,) = resources(body, "Procedure")
        assert procedure["code"]["coding"][0] == {
            "system": ICD10PCS,
            "code": PCS_CODE,
            "display": procedure["code"]["coding"][0]["display"],
        }
        assert procedure["status"] == "unknown"
        (status,) = [e for e in procedure["extension"] if e["url"] == VERIFICATION_EXTENSION]
        assert status["valueCodeableConcept"]["coding"][0]["code"] == "unconfirmed"
        assert all(
            c["code"]["coding"][0]["system"] == ICD10CM for c in resources(body, "Condition")
        )
        prediction_id = resources(body, "Provenance")[0]["id"]
        reviewed = service.feedback(prediction_id, (PCS_CODE, "accepted"), undecided="reject")
        assert reviewed.status_code == 201, reviewed.text
        found = service.http.get(
            "/fhir/r4/Procedure", params={"prediction": prediction_id}, headers=headers("ehr")
        ).json()
        (reviewed,) = resources(found, "Procedure")
        assert reviewed["status"] == "completed"


def test_a_note_the_model_abstains_on_says_why(sqlite_fhir_service: Service) -> None:
    answer = post_fhir(sqlite_fhir_service, document_reference("fiebre"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    valid_bundle(body)
    assert resources(body, "Condition") == []
    (outcome,) = resources(body, "OperationOutcome")
    assert outcome["issue"][0]["severity"] == "information"
    assert "word token" in outcome["issue"][0]["diagnostics"]
    (provenance,) = resources(body, "Provenance")
    assert provenance["target"][0]["reference"].startswith("urn:uuid:")


def test_parameters_carry_the_document_and_count(sqlite_fhir_service: Service) -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "document", "resource": document_reference("Fiebre y tos. Dolor torácico.")},
            {"name": "count", "valueInteger": 1},
        ],
    }
    answer = post_fhir(sqlite_fhir_service, parameters)
    assert answer.status_code == 200, answer.text
    assert len(resources(answer.json(), "Condition")) <= 1
    row_top_k = sqlite_fhir_service.engine.connect().execute(
        sa.text("SELECT top_k FROM predictions")
    )
    assert [tuple(row) for row in row_top_k] == [(1,)]


# -- bad FHIR -----------------------------------------------------------------------------------

LATIN1_NOTE = "Paciente de 45 años con fiebre."


def _with_attachment(**attachment: Any) -> dict[str, Any]:
    resource = document_reference(LATIN1_NOTE)
    resource["content"] = [{"attachment": attachment}]
    return resource


BAD_FHIR = {
    "wrong resourceType": (
        {"resourceType": "Patient", "id": "p-1"},
        "resourceType",
    ),
    "no attachment": (
        {**document_reference(LATIN1_NOTE), "content": [{"format": {"code": "urn:x"}}]},
        "DocumentReference.content[0].attachment",
    ),
    "no content": (
        {key: value for key, value in document_reference(LATIN1_NOTE).items() if key != "content"},
        "DocumentReference.content",
    ),
    "attachment without data": (
        _with_attachment(contentType="text/plain"),
        "DocumentReference.content[0].attachment.data",
    ),
    "bad base64": (
        _with_attachment(contentType="text/plain", data="not*base64!"),
        "DocumentReference.content[0].attachment.data",
    ),
    "unsupported contentType": (
        _with_attachment(contentType="application/pdf", data="JVBERi0xLjQK"),
        "DocumentReference.content[0].attachment.contentType",
    ),
    "undecodable charset": (
        _with_attachment(
            contentType="text/plain; charset=utf-8",
            data=base64.b64encode(LATIN1_NOTE.encode("iso-8859-1")).decode(),
        ),
        "DocumentReference.content[0].attachment.data",
    ),
    "unknown charset": (
        _with_attachment(contentType="text/plain; charset=x-klingon", data="SG9sYQ=="),
        "DocumentReference.content[0].attachment.contentType",
    ),
    "no subject": (
        document_reference(LATIN1_NOTE, subject=None),
        "DocumentReference.subject",
    ),
    "a note without letters": (
        _with_attachment(contentType="text/plain", data=base64.b64encode(b"12 / 34").decode()),
        "DocumentReference.content[0].attachment.data",
    ),
    "unknown element": (
        {**document_reference(LATIN1_NOTE), "colour": "blue"},
        "DocumentReference.colour",
    ),
    "Parameters without a document": (
        {"resourceType": "Parameters", "parameter": [{"name": "count", "valueInteger": 3}]},
        "Parameters.parameter",
    ),
    "Parameters with a bad document": (
        {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "document",
                    "resource": _with_attachment(contentType="text/html", data="PGI+"),
                }
            ],
        },
        "Parameters.parameter[0].resource.content[0].attachment.contentType",
    ),
    # Found by schemathesis: fhir.resources raised TypeError/KeyError (a 500) on these.
    "a contained resourceType that is not a string": (
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "document", "resource": {"resourceType": {"a": 1}}}],
        },
        "Parameters",
    ),
    "a contained resourceType that names no resource": (
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "document", "resource": {"resourceType": "NotAResource"}}],
        },
        "Parameters",
    ),
}


@pytest.mark.parametrize(("resource", "path"), BAD_FHIR.values(), ids=BAD_FHIR.keys())
def test_bad_fhir_is_an_operation_outcome_naming_the_path(
    sqlite_fhir_service: Service, resource: dict[str, Any], path: str
) -> None:
    answer = post_fhir(sqlite_fhir_service, resource)
    assert answer.status_code == 422, answer.text
    assert path in issue_paths(answer), answer.text
    assert sqlite_fhir_service.count("predictions") == 0


def test_requests_that_are_not_fhir_json(sqlite_fhir_service: Service) -> None:
    http = sqlite_fhir_service.http
    as_text = http.post(
        CODE, content=b"Fever.", headers={**headers("ehr"), "Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415
    assert issue_paths(as_text) == ["http.Content-Type"]
    not_json = http.post(
        CODE, content=b"{nope", headers={**headers("ehr"), "Content-Type": "application/fhir+json"}
    )
    assert not_json.status_code == 400
    issue_paths(not_json)
    xml = post_fhir(
        sqlite_fhir_service, document_reference(LATIN1_NOTE), Accept="application/fhir+xml"
    )
    assert xml.status_code == 406
    assert issue_paths(xml) == ["http.Accept"]
    plain = post_fhir(
        sqlite_fhir_service, document_reference(LATIN1_NOTE), Accept="application/json"
    )
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/json; charset=utf-8"
    too_long = document_reference("fiebre " * 20_000)
    assert post_fhir(sqlite_fhir_service, too_long).status_code == 413


# -- keys, roles, metadata ----------------------------------------------------------------------


def test_keys_and_roles_are_the_json_apis(sqlite_fhir_service: Service) -> None:
    http = sqlite_fhir_service.http
    no_key = http.post(CODE, json=document_reference(LATIN1_NOTE))
    assert no_key.status_code == 401
    assert no_key.json()["issue"][0]["code"] == "login"
    OperationOutcome.model_validate(no_key.json())
    assert (
        post_fhir(sqlite_fhir_service, document_reference(LATIN1_NOTE), "coder").status_code == 403
    )
    assert (
        post_fhir(sqlite_fhir_service, document_reference(LATIN1_NOTE), "admin").status_code == 200
    )
    search = http.get("/fhir/r4/Condition", params={"encounter": ENCOUNTER})
    assert search.status_code == 401
    unfiltered = http.get("/fhir/r4/Condition", headers=headers("ehr"))
    assert unfiltered.status_code == 422
    assert issue_paths(unfiltered) == ["http.encounter"]
    bad_id = http.get("/fhir/r4/Condition", params={"prediction": "nope"}, headers=headers("ehr"))
    assert bad_id.status_code == 422
    assert issue_paths(bad_id) == ["http.prediction"]
    unknown = http.get("/fhir/r4/Patient/1", headers=headers("ehr"))
    assert unknown.status_code == 404
    OperationOutcome.model_validate(unknown.json())
    assert unknown.headers["cache-control"] == "no-store"


def test_an_ehr_key_reads_only_the_results_of_its_own_notes(
    sqlite_fhir_service: Service,
) -> None:
    http = sqlite_fhir_service.http
    other = document_reference("Paciente con fiebre y tos.", subject="Patient/someone-else")
    sent = post_fhir(sqlite_fhir_service, other, "admin")  # another key sent this one
    assert sent.status_code == 200, sent.text
    condition_id = resources(sent.json(), "Condition")[0]["id"]
    search = {"patient": "Patient/someone-else"}
    as_ehr = http.get("/fhir/r4/Condition", params=search, headers=headers("ehr")).json()
    as_coder = http.get("/fhir/r4/Condition", params=search, headers=headers("coder")).json()
    assert as_ehr["total"] == 0
    assert as_coder["total"] == len(resources(sent.json(), "Condition")) > 0
    read = f"/fhir/r4/Condition/{condition_id}"
    assert http.get(read, headers=headers("ehr")).status_code == 404
    assert http.get(read, headers=headers("coder")).status_code == 200


def test_the_capability_statement_describes_the_interface(sqlite_fhir_service: Service) -> None:
    answer = sqlite_fhir_service.http.get("/fhir/r4/metadata")  # no key needed
    assert answer.status_code == 200
    statement = CapabilityStatement.model_validate(answer.json())
    assert statement.fhirVersion == "4.0.1"
    (rest,) = statement.rest
    by_type = {resource.type: resource for resource in rest.resource}
    assert set(by_type) == {"DocumentReference", "Condition", "Procedure"}
    (operation,) = by_type["DocumentReference"].operation
    assert operation.name == "code"
    assert {p.name for p in by_type["Condition"].searchParam} == {
        "encounter",
        "subject",
        "patient",
        "prediction",
        "verification-status",
    }


# -- idempotency --------------------------------------------------------------------------------


def test_an_idempotent_retry_returns_the_same_bundle(sqlite_fhir_service: Service) -> None:
    resource = document_reference("Paciente con fiebre y tos.")
    first = post_fhir(sqlite_fhir_service, resource, **{"Idempotency-Key": "fhir-1"})
    again = post_fhir(sqlite_fhir_service, resource, **{"Idempotency-Key": "fhir-1"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert sqlite_fhir_service.count("predictions") == 1

    other_patient = document_reference("Paciente con fiebre y tos.", subject="Patient/other")
    refused = post_fhir(sqlite_fhir_service, other_patient, **{"Idempotency-Key": "fhir-1"})
    assert refused.status_code == 422
    assert "already used with a different request" in refused.json()["issue"][0]["diagnostics"]
    assert sqlite_fhir_service.count("predictions") == 1
