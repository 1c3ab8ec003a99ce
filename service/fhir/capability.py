"""The CapabilityStatement at GET /fhir/r4/metadata: exactly what this server does, no more."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from service.fhir.vocabulary import (
    CODE_OPERATION,
    EVIDENCE_EXTENSION,
    FHIR_JSON,
    FHIR_VERSION,
    NOTE_TEXT_EXTENSION,
    PREDICTION_SEARCH_PARAMETER,
    SUGGESTION_EXTENSION,
    VERIFICATION_EXTENSION,
)

# When this interface last changed: the CapabilityStatement's `date`.
INTERFACE_DATE = "2026-11-30"
HL7_SEARCH_PARAMETERS = "http://hl7.org/fhir/SearchParameter"

SECURITY = (
    "Send an API key as `X-API-Key: <key>` or `Authorization: Bearer <key>` (keys from "
    "`plant-icd keys create`). Role `ehr` calls $code; `ehr` and `coder` search and read "
    "Condition and Procedure; `admin` may do everything. Without a key: 401; wrong role: 403. "
    "This statement is served without a key."
)
CODE_DOCUMENTATION = (
    "Codes a clinical note. Send a DocumentReference, or a Parameters resource with it in "
    "`document` (and optionally `count`, the codes to rank, 1-1000). The note is the first "
    "content[].attachment with contentType text/plain: its base64 `data`, decoded with the "
    "contentType's charset (UTF-8 by default), or plain text in the extension "
    f"{NOTE_TEXT_EXTENSION} (valueString). `subject.reference` is required. Answers a "
    "collection Bundle: one Condition per ICD-10-CM code (http://hl7.org/fhir/sid/icd-10-cm) "
    "and one Procedure per ICD-10-PCS code (http://www.cms.gov/Medicare/Coding/ICD10) above "
    "its threshold, verificationStatus unconfirmed (Procedure: status unknown and the "
    f"extension {VERIFICATION_EXTENSION}), the score in {SUGGESTION_EXTENSION} and each "
    f"evidence span in {EVIDENCE_EXTENSION} with [start, end) offsets into the attachment's "
    "text, and a Provenance whose id is the prediction id, naming the model. Every call is "
    "recorded in the audit log. `Idempotency-Key` makes retries safe, as on POST "
    "/v1/predictions."
)


def _search_parameters(resource: str) -> list[dict[str, Any]]:
    parameters = [
        {
            "name": "encounter",
            "type": "reference",
            "definition": f"{HL7_SEARCH_PARAMETERS}/clinical-encounter",
            "documentation": "Encounter/<id> (or <id>) as sent in context.encounter",
        },
        {
            "name": "subject",
            "type": "reference",
            "definition": f"{HL7_SEARCH_PARAMETERS}/{resource}-subject",
            "documentation": "Patient/<id> (or <id>) as sent in subject",
        },
        {
            "name": "patient",
            "type": "reference",
            "definition": f"{HL7_SEARCH_PARAMETERS}/clinical-patient",
            "documentation": "the same as subject",
        },
        {
            "name": "prediction",
            "type": "token",
            "definition": PREDICTION_SEARCH_PARAMETER,
            "documentation": "the prediction id (the Provenance id of the $code answer)",
        },
    ]
    if resource == "Condition":
        parameters.append(
            {
                "name": "verification-status",
                "type": "token",
                "definition": f"{HL7_SEARCH_PARAMETERS}/Condition-verification-status",
                "documentation": "unconfirmed (not reviewed yet), confirmed or refuted",
            }
        )
    return parameters


def _coded_resource(resource: str) -> dict[str, Any]:
    return {
        "type": resource,
        "interaction": [
            {"code": "read"},
            {
                "code": "search-type",
                "documentation": "the codes of matching predictions: suggestions above "
                "threshold (unconfirmed until reviewed) and every code a coder decided "
                "(accepted or added: confirmed; rejected: refuted); name at least one of "
                "encounter, subject, patient, prediction",
            },
        ],
        "searchParam": _search_parameters(resource),
    }


def capability_statement(*, base_url: str, software_version: str) -> CapabilityStatement:
    return CapabilityStatement.model_validate(
        {
            "status": "active",
            "date": INTERFACE_DATE,
            "publisher": "PLANT-ICD",
            "kind": "instance",
            "software": {"name": "PLANT-ICD", "version": software_version},
            "implementation": {
                "description": "PLANT-ICD clinical coding service: ICD codes for notes",
                "url": base_url,
            },
            "fhirVersion": FHIR_VERSION,
            "format": [FHIR_JSON, "json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {"description": SECURITY},
                    "resource": [
                        {
                            "type": "DocumentReference",
                            "operation": [
                                {
                                    "name": "code",
                                    "definition": CODE_OPERATION,
                                    "documentation": CODE_DOCUMENTATION,
                                }
                            ],
                        },
                        _coded_resource("Condition"),
                        _coded_resource("Procedure"),
                    ],
                }
            ],
        }
    )
