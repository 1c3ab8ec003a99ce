"""Reading a coding request: the note and its references out of a DocumentReference (sent alone,
or as the `document` parameter of a Parameters resource).

The note is the first `content[].attachment` whose contentType is `text/plain`: its `data`
(base64, decoded with the contentType's charset, UTF-8 by default) or, in the text form, the
plain text in the attachment-text extension. Every problem names its FHIRPath, so an
integrator knows which element to fix.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.reference import Reference
from pydantic import BaseModel, Field, ValidationError

from service.crud import NoteRecord
from service.fhir.outcome import FhirError, Problem, fhir_path
from service.fhir.vocabulary import NOTE_TEXT_EXTENSION
from service.schemas import Identifier, NoteIn

DOCUMENT_PARAMETER = "document"
COUNT_PARAMETER = "count"
PLAIN_TEXT = "text/plain"
DEFAULT_CHARSET = "utf-8"


class DocumentNote(NoteIn):
    """A note read from a DocumentReference: NoteIn's fields and the patient it is about.

    `subject_reference` is part of the Idempotency-Key fingerprint (every field is), so a retry
    for another patient with the same text is refused rather than replayed."""

    subject_reference: Identifier | None = Field(None, description="the patient, `Patient/123`")

    def audit_record(self, *, top_k: int) -> NoteRecord:
        return dataclasses.replace(
            super().audit_record(top_k=top_k), subject_reference=self.subject_reference
        )


@dataclass(frozen=True)
class CodeRequest:
    """What $code was asked: the note, and the references the results must carry."""

    note: DocumentNote
    subject: str
    encounter: str | None
    # `DocumentReference/<id>` when the document has an id: Condition.evidence and Provenance
    # point at it.
    document: str | None


def read_code_request(payload: Any) -> CodeRequest:
    """The coding request in `payload` (parsed JSON), or FhirError naming what to fix."""
    if not isinstance(payload, dict):
        raise FhirError(
            422,
            [Problem("the body is not a JSON object: send a DocumentReference or a Parameters")],
        )
    kind = payload.get("resourceType")
    if kind == "Parameters":
        raw_document, root, top_k = _from_parameters(payload)
    elif kind == "DocumentReference":
        raw_document, root, top_k = payload, "DocumentReference", None
    else:
        shown = "missing" if kind is None else repr(kind)
        raise FhirError(
            422,
            [
                Problem(
                    f"resourceType is {shown}: $code reads a DocumentReference, or a "
                    f"Parameters resource holding one in its `{DOCUMENT_PARAMETER}` parameter",
                    "resourceType",
                    code="not-supported",
                )
            ],
        )
    document = _validated(DocumentReference, raw_document, root)
    assert isinstance(document, DocumentReference)
    text, text_path = _note_text(raw_document, root)
    subject = _literal_reference(document.subject, f"{root}.subject", "Patient/123")
    if subject is None:
        raise FhirError(
            422,
            [
                Problem(
                    "the document has no subject: Condition and Procedure need one, so send "
                    "the patient as subject.reference (e.g. Patient/123)",
                    f"{root}.subject",
                    code="required",
                )
            ],
        )
    encounters = document.context.encounter if document.context is not None else None
    encounter_path = f"{root}.context.encounter[0]"
    encounter = _literal_reference(
        encounters[0] if encounters else None, encounter_path, "Encounter/456"
    )
    note_id = f"DocumentReference/{document.id}" if document.id else None
    # Where each note field came from, so a note the JSON rules refuse names the FHIR element.
    element_paths = {
        "text": text_path,
        "note_id": f"{root}.id",
        "encounter_id": f"{encounter_path}.reference",
        "subject_reference": f"{root}.subject.reference",
    }
    note = _validated_note(
        {
            "text": text,
            "note_id": note_id,
            "encounter_id": encounter,
            "subject_reference": subject,
            "top_k": top_k,
        },
        element_paths,
    )
    return CodeRequest(note=note, subject=subject, encounter=encounter, document=note_id)


# -- the envelope -------------------------------------------------------------------------------


def _validated(model: type[BaseModel], raw: dict[str, Any], root: str) -> BaseModel:
    """`raw` as `model`, or 422 with one problem per invalid element, each at its path."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False, include_input=False):
            loc = [part for part in item["loc"] if isinstance(part, str | int)]
            message = _message(item)
            problems.append(Problem(message, fhir_path(root, loc), code=_issue_for(item)))
        raise FhirError(422, problems) from None
    except (TypeError, KeyError) as error:
        # fhir.resources looks contained resources up by their resourceType before pydantic
        # validates them: a resourceType that is not a known type's name fails there, not as a
        # ValidationError (found by schemathesis: {"resourceType": {...}} inside Parameters).
        raise FhirError(
            422,
            [
                Problem(
                    f"a contained resource has an invalid resourceType ({error}): each "
                    "resourceType must be the name of a FHIR R4 resource, as a string",
                    root,
                    code="structure",
                )
            ],
        ) from None


def _message(item: Any) -> str:
    if item["type"] == "missing":
        return "is required"
    if item["type"] == "base64_decode":
        return _not_base64(str(item.get("ctx", {}).get("error", item["msg"])))
    return str(item["msg"])


def _not_base64(why: str) -> str:
    return (
        f"data is not valid base64 ({why}): encode the note's bytes with standard base64 "
        "(A-Z, a-z, 0-9, +, /, = padding, no line breaks)"
    )


def _issue_for(item: Any) -> str:
    if item["type"] == "missing":
        return "required"
    return "structure" if item["type"] == "extra_forbidden" else "value"


def _from_parameters(payload: dict[str, Any]) -> tuple[dict[str, Any], str, int | None]:
    """The DocumentReference, its path and the count from a Parameters resource."""
    _validated(Parameters, payload, "Parameters")
    found: tuple[dict[str, Any], str] | None = None
    top_k: int | None = None
    problems: list[Problem] = []
    for index, parameter in enumerate(payload.get("parameter") or []):
        path = f"Parameters.parameter[{index}]"
        name = parameter.get("name")
        if name == DOCUMENT_PARAMETER:
            resource = parameter.get("resource")
            if found is not None:
                problems.append(Problem("a second document: send one per request", path))
            elif isinstance(resource, dict) and resource.get("resourceType") == "DocumentReference":
                found = (resource, f"{path}.resource")
            else:
                problems.append(
                    Problem(
                        "the document parameter must hold a DocumentReference in `resource`",
                        f"{path}.resource",
                    )
                )
        elif name == COUNT_PARAMETER:
            value = parameter.get("valueInteger")
            if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000:
                top_k = value
            else:
                problems.append(
                    Problem(
                        "count must be a valueInteger from 1 to 1000 (codes to rank)",
                        f"{path}.valueInteger",
                    )
                )
        else:
            problems.append(
                Problem(
                    f"unknown parameter {name!r}: $code takes `{DOCUMENT_PARAMETER}` (a "
                    f"DocumentReference) and `{COUNT_PARAMETER}` (an integer)",
                    f"{path}.name",
                    code="not-supported",
                )
            )
    if found is None and not problems:
        problems.append(
            Problem(
                f"no `{DOCUMENT_PARAMETER}` parameter: send the DocumentReference in one",
                "Parameters.parameter",
                code="required",
            )
        )
    if problems:
        raise FhirError(422, problems)
    assert found is not None
    document, root = found
    return document, root, top_k


def _literal_reference(reference: Reference | None, path: str, example: str) -> str | None:
    """The `reference` string of a Reference (None when the Reference is absent)."""
    if reference is None:
        return None
    if not reference.reference:
        raise FhirError(
            422,
            [
                Problem(
                    f"the reference has no `reference`: send a literal reference such as {example} "
                    "(identifier-only references cannot be searched)",
                    f"{path}.reference",
                    code="required",
                )
            ],
        )
    return reference.reference


def _validated_note(values: dict[str, Any], paths: dict[str, str]) -> DocumentNote:
    try:
        return DocumentNote.model_validate(values)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False, include_input=False):
            field = str(item["loc"][0]) if item["loc"] else "text"
            message = item["msg"].removeprefix("Value error, ")
            problems.append(Problem(message, paths.get(field), code="value"))
        raise FhirError(422, problems) from None


# -- the note's text ----------------------------------------------------------------------------


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """`text/plain; charset="ISO-8859-1"` -> ("text/plain", {"charset": "ISO-8859-1"})."""
    media, *raw_parameters = content_type.split(";")
    parameters = {}
    for raw in raw_parameters:
        name, _, value = raw.partition("=")
        parameters[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), parameters


def _note_text(document: dict[str, Any], root: str) -> tuple[str, str]:
    """The note and the path it was read from: the first plain-text attachment."""
    attachments = [
        (f"{root}.content[{index}].attachment", content.get("attachment") or {})
        for index, content in enumerate(document.get("content") or [])
    ]
    if not attachments:
        raise FhirError(
            422,
            [
                Problem(
                    "the document has no content: send the note in content[0].attachment",
                    f"{root}.content",
                    code="required",
                )
            ],
        )
    for path, attachment in attachments:
        content_type = attachment.get("contentType")
        if content_type is not None and _media_type(content_type)[0] == PLAIN_TEXT:
            return _attachment_text(attachment, path)
    path, attachment = attachments[0]
    content_type = attachment.get("contentType")
    if content_type is None:
        message = f"the attachment has no contentType: send {PLAIN_TEXT} (with `; charset=...` "
        message += "when the text is not UTF-8)"
        raise FhirError(422, [Problem(message, f"{path}.contentType", code="required")])
    raise FhirError(
        422,
        [
            Problem(
                f"contentType {content_type!r} is not supported: this service codes plain "
                f"text; send the note as {PLAIN_TEXT} (convert PDF, RTF or HTML notes to text "
                "first)",
                f"{path}.contentType",
                code="not-supported",
            )
        ],
    )


def _attachment_text(attachment: dict[str, Any], path: str) -> tuple[str, str]:
    inline = [
        (index, extension)
        for index, extension in enumerate(attachment.get("extension") or [])
        if isinstance(extension, dict) and extension.get("url") == NOTE_TEXT_EXTENSION
    ]
    data = attachment.get("data")
    if inline and data is not None:
        raise FhirError(
            422,
            [
                Problem(
                    "the attachment holds the note twice (data and attachment-text): send one",
                    f"{path}.data",
                )
            ],
        )
    if inline:
        index, extension = inline[0]
        text = extension.get("valueString")
        text_path = f"{path}.extension[{index}].valueString"
        if not isinstance(text, str):
            raise FhirError(
                422, [Problem("the attachment-text extension needs a valueString", text_path)]
            )
        return text, text_path
    if data is None:
        if attachment.get("url"):
            message = "the attachment points at a url, which this service does not fetch: send "
            message += "the note itself in data (base64)"
            raise FhirError(422, [Problem(message, f"{path}.url", code="not-supported")])
        message = "the attachment holds no note: send it in data (base64), or as plain text in "
        message += f"the extension {NOTE_TEXT_EXTENSION}"
        raise FhirError(422, [Problem(message, f"{path}.data", code="required")])
    return _decoded(data, _media_type(attachment["contentType"])[1], path), f"{path}.data"


def _decoded(data: Any, parameters: dict[str, str], path: str) -> str:
    if not isinstance(data, str):
        raise FhirError(422, [Problem("data must be a base64 string", f"{path}.data")])
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise FhirError(422, [Problem(_not_base64(str(error)), f"{path}.data")]) from None
    charset = parameters.get("charset") or DEFAULT_CHARSET
    try:
        return raw.decode(charset)
    except LookupError:
        raise FhirError(
            422,
            [
                Problem(
                    f"charset {charset!r} is not a text encoding this service knows: send "
                    "text/plain with charset utf-8, iso-8859-1, windows-1252 or another "
                    "standard name",
                    f"{path}.contentType",
                    code="not-supported",
                )
            ],
        ) from None
    except UnicodeDecodeError as error:
        raise FhirError(
            422,
            [
                Problem(
                    f"data does not decode as {charset}: byte {raw[error.start]:#04x} at "
                    f"position {error.start} is not valid there; send the charset the note is "
                    "written in (contentType `text/plain; charset=...`)",
                    f"{path}.data",
                )
            ],
        ) from None
