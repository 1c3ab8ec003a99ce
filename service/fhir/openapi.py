"""The OpenAPI description of the FHIR routes: the request body $code reads (a DocumentReference
or Parameters, closed schemas so generated examples are valid FHIR) and the resource each answer
holds. Documentation only: requests are read and checked by service/fhir/documents.py.
"""

from __future__ import annotations

from typing import Any

from service.fhir.documents import COUNT_PARAMETER, DOCUMENT_PARAMETER
from service.fhir.vocabulary import FHIR_JSON, JSON_MEDIA_TYPES, NOTE_TEXT_EXTENSION

_RESOURCE_SCHEMA = {"type": "object", "required": ["resourceType"]}


def _closed(required: list[str], **properties: Any) -> dict[str, Any]:
    """An object schema with exactly these properties (FHIR refuses unknown elements)."""
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


_PLAIN_TEXT_TYPES = ["text/plain", "text/plain; charset=utf-8", "text/plain; charset=iso-8859-1"]
_ATTACHMENT_SCHEMA = {
    "oneOf": [
        _closed(
            ["contentType", "data"],
            contentType={"enum": _PLAIN_TEXT_TYPES},
            data={"type": "string", "format": "byte", "description": "the note, base64"},
        ),
        _closed(
            ["contentType", "extension"],
            contentType={"enum": _PLAIN_TEXT_TYPES},
            extension={
                "type": "array",
                "minItems": 1,
                "maxItems": 1,
                "items": _closed(
                    ["url", "valueString"],
                    url={"const": NOTE_TEXT_EXTENSION},
                    valueString={"type": "string", "description": "the note as plain text"},
                ),
            },
        ),
    ]
}


def _reference_schema(resource_type: str) -> dict[str, Any]:
    return _closed(
        ["reference"],
        reference={"type": "string", "pattern": f"^{resource_type}/[A-Za-z0-9.-]{{1,64}}$"},
    )


_DOCUMENT_SCHEMA: dict[str, Any] = {
    **_closed(
        ["resourceType", "status", "subject", "content"],
        resourceType={"const": "DocumentReference"},
        id={"type": "string", "pattern": "^[A-Za-z0-9.-]{1,64}$"},
        status={"enum": ["current", "superseded", "entered-in-error"]},
        subject=_reference_schema("Patient"),
        context=_closed(
            [],
            encounter={"type": "array", "maxItems": 1, "items": _reference_schema("Encounter")},
        ),
        content={
            "type": "array",
            "minItems": 1,
            "items": _closed(["attachment"], attachment=_ATTACHMENT_SCHEMA),
        },
    ),
    "example": {
        "resourceType": "DocumentReference",
        "id": "note-1",
        "status": "current",
        "subject": {"reference": "Patient/123"},
        "context": {"encounter": [{"reference": "Encounter/456"}]},
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": "RmV2ZXIgYW5kIHByb2R1Y3RpdmUgY291Z2gu",
                }
            }
        ],
    },
}
_PARAMETERS_SCHEMA: dict[str, Any] = _closed(
    ["resourceType", "parameter"],
    resourceType={"const": "Parameters"},
    parameter={
        "type": "array",
        "minItems": 1,
        "maxItems": 2,
        "items": {
            "oneOf": [
                _closed(
                    ["name", "resource"],
                    name={"const": DOCUMENT_PARAMETER},
                    resource=_DOCUMENT_SCHEMA,
                ),
                _closed(
                    ["name", "valueInteger"],
                    name={"const": COUNT_PARAMETER},
                    valueInteger={"type": "integer", "minimum": 1, "maximum": 1000},
                ),
            ]
        },
    },
)
CODE_REQUEST_BODY = {
    "required": True,
    "content": {
        media_type: {"schema": {"oneOf": [_DOCUMENT_SCHEMA, _PARAMETERS_SCHEMA]}}
        for media_type in JSON_MEDIA_TYPES
    },
}


def _fhir_content(resource_type: str, description: str) -> dict[str, Any]:
    schema = {**_RESOURCE_SCHEMA, "properties": {"resourceType": {"const": resource_type}}}
    return {"description": description, "content": {FHIR_JSON: {"schema": schema}}}


_ERROR_DESCRIPTIONS = {
    400: "the body is not UTF-8 JSON",
    401: "no API key, or an unknown one",
    403: "the key's role may not do this",
    404: "no such resource",
    406: "the client asked for a format other than FHIR JSON",
    413: "the note or the body is over the configured limit",
    415: "the body is not application/fhir+json (or application/json)",
    422: "the resource or a parameter is invalid; each issue names its path",
    503: "the model is warming up or the database is unavailable; retry after Retry-After",
}


def responses(success: str, description: str, *errors: int) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {200: _fhir_content(success, description)}
    for status in errors:
        responses[status] = _fhir_content("OperationOutcome", _ERROR_DESCRIPTIONS[status])
    return responses
