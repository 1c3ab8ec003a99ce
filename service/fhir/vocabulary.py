"""Every URI and code the FHIR interface writes or reads, in one place.

The extension URLs are this service's own canonical names (documented in docs/OPERATIONS.md);
the code systems and value sets are HL7's and CMS's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from model.codes import CodeSystem

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"
PLAIN_JSON = "application/json"
# What the route accepts as a request body and can answer with.
JSON_MEDIA_TYPES = (FHIR_JSON, PLAIN_JSON)

# This service's canonical base: a name for its extensions and its operation, not a page to
# fetch (the definitions are in docs/OPERATIONS.md).
CANONICAL_BASE = "https://plant-icd.example/fhir"
SUGGESTION_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/suggestion"
EVIDENCE_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/evidence"
VERIFICATION_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/verification-status"
NOTE_TEXT_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/attachment-text"
CODE_OPERATION = f"{CANONICAL_BASE}/OperationDefinition/DocumentReference-code"
PREDICTION_SEARCH_PARAMETER = f"{CANONICAL_BASE}/SearchParameter/prediction"

URI_SYSTEM = "urn:ietf:rfc:3986"
CONDITION_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
PARTICIPANT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"

# A suggestion is unconfirmed until a coder accepts (or adds) it, or rejects it.
Verification = Literal["unconfirmed", "confirmed", "refuted"]
VERIFICATIONS: tuple[Verification, ...] = ("unconfirmed", "confirmed", "refuted")
# Procedure has no verificationStatus: its status says the same in Procedure's terms.
PROCEDURE_STATUS: dict[Verification, str] = {
    "unconfirmed": "unknown",
    "confirmed": "completed",
    "refuted": "entered-in-error",
}


@dataclass(frozen=True)
class FhirCodeSystem:
    """How codes of one of the model's code systems are written in FHIR."""

    uri: str
    display: str
    resource_type: Literal["Condition", "Procedure"]


FHIR_CODE_SYSTEMS: dict[CodeSystem, FhirCodeSystem] = {
    CodeSystem.ICD10_CM: FhirCodeSystem(
        "http://hl7.org/fhir/sid/icd-10-cm", "ICD-10-CM", "Condition"
    ),
    CodeSystem.ICD10_PCS: FhirCodeSystem(
        "http://www.cms.gov/Medicare/Coding/ICD10", "ICD-10-PCS", "Procedure"
    ),
    CodeSystem.ICD9_CM: FhirCodeSystem("http://hl7.org/fhir/sid/icd-9-cm", "ICD-9-CM", "Condition"),
    # ICD-9-CM volume 3: the same system URI as its diagnoses.
    CodeSystem.ICD9_PCS: FhirCodeSystem(
        "http://hl7.org/fhir/sid/icd-9-cm", "ICD-9-CM", "Procedure"
    ),
}
