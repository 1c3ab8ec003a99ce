"""Writing results as FHIR: one Condition per diagnosis code and one Procedure per procedure
code, each carrying its score and evidence in extensions, a Provenance naming the model and the
prediction, and the Bundles that hold them.

The extensions are filled from the JSON API's own objects (`CodeOut`, `HighlightOut`), field by
field, so every field the JSON answer carries reaches the FHIR one under the same name
(camelCase): `above_threshold` becomes the sub-extension `aboveThreshold`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntrySearch, BundleLink
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.condition import Condition, ConditionEvidence
from fhir.resources.R4B.device import Device, DeviceDeviceName, DeviceVersion
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.operationoutcome import OperationOutcome, OperationOutcomeIssue
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.provenance import Provenance, ProvenanceAgent, ProvenanceEntity
from fhir.resources.R4B.reference import Reference

from model.catalogue import Catalogue
from model.codes import CodeSystem
from service.fhir.vocabulary import (
    CONDITION_CATEGORY_SYSTEM,
    CONDITION_VERIFICATION_SYSTEM,
    EVIDENCE_EXTENSION,
    FHIR_CODE_SYSTEMS,
    PARTICIPANT_TYPE_SYSTEM,
    PROCEDURE_STATUS,
    SUGGESTION_EXTENSION,
    URI_SYSTEM,
    VERIFICATION_EXTENSION,
    Verification,
)
from service.schemas import CodeOut, HighlightOut, ModelRef

CodedResource = Condition | Procedure
# A JSON-API prediction has no patient reference; Condition and Procedure still need a subject.
UNKNOWN_SUBJECT = "not recorded: the note was coded through the JSON API, without a patient"
MODEL_DEVICE_ID = "model"
# uuid5 namespace for the ids of the entries a prediction's Bundle holds, so a replayed
# answer is the same Bundle, byte for byte.
_ENTRY_NAMESPACE = uuid.UUID("0d6f6f3e-3b4a-5c1e-9a57-2f6b1b7c9e10")


@dataclass(frozen=True)
class Origin:
    """Where a prediction's results belong: which prediction, when, by which model, for whom."""

    prediction_id: uuid.UUID
    created_at: datetime
    model: ModelRef
    subject: str | None
    encounter: str | None
    document: str | None  # `DocumentReference/<id>`


@dataclass(frozen=True)
class CodedResult:
    """One code as FHIR shows it: its system, its verification, and the model's suggestion
    (None for a code a coder added)."""

    code: str
    description: str
    system: CodeSystem
    verification: Verification
    suggestion: CodeOut | None


def code_system_of(code: str, catalogues: Sequence[Catalogue]) -> CodeSystem:
    """The system a model's code is written in. With one system, that one; with several
    (`icd10cm+icd10pcs`), the first catalogue that confirms the code, else the first whose
    format it fits (CodiEsp's four-character PCS codes can look like ICD-10-CM categories)."""
    if len(catalogues) == 1:
        return catalogues[0].system
    well_formed: CodeSystem | None = None
    for catalogue in catalogues:
        try:
            info = catalogue.lookup(code)
        except ValueError:
            continue
        if info.valid is True:
            return catalogue.system
        if info.valid is None and well_formed is None:
            well_formed = catalogue.system
    return well_formed or catalogues[0].system


def resource_id(prediction_id: uuid.UUID, code: str) -> str:
    """`<prediction id>-<code>`: a valid FHIR id (letters, digits, '-' and '.'; at most 64)."""
    return f"{prediction_id}-{code}"


def parse_resource_id(value: str) -> tuple[uuid.UUID, str] | None:
    """(prediction id, code) of a resource id, or None when it is not one of ours."""
    prediction, separator, code = value[:36], value[36:37], value[37:]
    if separator != "-" or not code:
        return None
    try:
        return uuid.UUID(prediction), code
    except ValueError:
        return None


# -- extensions ---------------------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _typed_value(value: Any) -> dict[str, Any]:
    """`value[x]` for a JSON value: bool, int, float and str map to their FHIR types; anything
    else travels as its JSON text."""
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    if isinstance(value, str):
        return {"valueString": value}
    return {"valueString": json.dumps(value, sort_keys=True)}


def _sub_extensions(fields: Mapping[str, Any]) -> list[Extension]:
    """One sub-extension per field that has a value (a list gives one per item)."""
    extensions = []
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None and item != "":
                extensions.append(
                    Extension.model_validate({"url": _camel(name), **_typed_value(item)})
                )
    return extensions


def suggestion_extension(code: CodeOut) -> Extension:
    """The model's judgement of the code: score, rank, threshold, above_threshold, ..."""
    fields = code.model_dump(mode="json", exclude={"code", "description", "highlights"})
    return Extension(url=SUGGESTION_EXTENSION, extension=_sub_extensions(fields))


def evidence_extension(highlight: HighlightOut) -> Extension:
    """One evidence span: [start, end) offsets into the attachment's text, its text, weight and
    whatever else the JSON highlight carries."""
    return Extension(
        url=EVIDENCE_EXTENSION, extension=_sub_extensions(highlight.model_dump(mode="json"))
    )


def _verification_concept(verification: Verification) -> CodeableConcept:
    return CodeableConcept(coding=[Coding(system=CONDITION_VERIFICATION_SYSTEM, code=verification)])


def _result_extensions(result: CodedResult) -> list[Extension]:
    if result.suggestion is None:
        return []
    return [
        suggestion_extension(result.suggestion),
        *(evidence_extension(highlight) for highlight in result.suggestion.highlights),
    ]


# -- resources ----------------------------------------------------------------------------------


def _reference(reference: str | None, display: str | None = None) -> Reference | None:
    if reference is None:
        return None if display is None else Reference(display=display)
    return Reference(reference=reference)


def _code_concept(result: CodedResult) -> CodeableConcept:
    system = FHIR_CODE_SYSTEMS[result.system]
    return CodeableConcept(
        coding=[Coding(system=system.uri, code=result.code, display=result.description or None)],
        text=result.description or result.code,
    )


def coded_resource(result: CodedResult, origin: Origin) -> CodedResource:
    """A Condition for a diagnosis code, a Procedure for a procedure code."""
    subject = _reference(origin.subject, UNKNOWN_SUBJECT)
    common: dict[str, Any] = {
        "id": resource_id(origin.prediction_id, result.code),
        "code": _code_concept(result),
        "subject": subject,
        "encounter": _reference(origin.encounter),
    }
    if FHIR_CODE_SYSTEMS[result.system].resource_type == "Procedure":
        return Procedure(
            **common,
            status=PROCEDURE_STATUS[result.verification],
            extension=[
                *_result_extensions(result),
                Extension(
                    url=VERIFICATION_EXTENSION,
                    valueCodeableConcept=_verification_concept(result.verification),
                ),
            ],
        )
    evidence = (
        [ConditionEvidence(detail=[Reference(reference=origin.document)])]
        if origin.document is not None
        else None
    )
    return Condition(
        **common,
        extension=_result_extensions(result) or None,
        verificationStatus=_verification_concept(result.verification),
        category=[
            CodeableConcept(
                coding=[Coding(system=CONDITION_CATEGORY_SYSTEM, code="encounter-diagnosis")]
            )
        ],
        recordedDate=origin.created_at,
        evidence=evidence,
    )


def provenance(origin: Origin, targets: Sequence[str]) -> Provenance:
    """Who made the results: the model (a contained Device with its name and version), in the
    prediction whose id is the Provenance's id, from the document."""
    model = Device(
        id=MODEL_DEVICE_ID,
        deviceName=[DeviceDeviceName(name=origin.model.name, type="model-name")],
        version=[DeviceVersion(value=origin.model.version)],
    )
    entity = (
        [ProvenanceEntity(role="source", what=Reference(reference=origin.document))]
        if origin.document is not None
        else None
    )
    return Provenance(
        id=str(origin.prediction_id),
        contained=[model],
        target=[Reference(reference=target) for target in targets],
        recorded=origin.created_at,
        activity=CodeableConcept(text=f"ICD coding, prediction {origin.prediction_id}"),
        agent=[
            ProvenanceAgent(
                type=CodeableConcept(
                    coding=[Coding(system=PARTICIPANT_TYPE_SYSTEM, code="author")]
                ),
                who=Reference(
                    reference=f"#{MODEL_DEVICE_ID}",
                    display=f"{origin.model.name} {origin.model.version}",
                ),
            )
        ],
        entity=entity,
    )


def _information(message: str) -> OperationOutcome:
    return OperationOutcome(
        issue=[
            OperationOutcomeIssue(severity="information", code="informational", diagnostics=message)
        ]
    )


def _entry_url(origin: Origin, name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_ENTRY_NAMESPACE, f'{origin.prediction_id}/{name}')}"


def coding_bundle(
    origin: Origin, results: Sequence[CodedResult], base_url: str, note: str | None
) -> Bundle:
    """The $code answer: a collection of the coded resources, an OperationOutcome saying why
    when there are none (`note`), and the Provenance. Its identifier is the prediction id."""
    entries = []
    targets = []
    for result in results:
        resource = coded_resource(result, origin)
        local = f"{resource.get_resource_type()}/{resource.id}"
        entries.append(BundleEntry(fullUrl=f"{base_url}/{local}", resource=resource))
        targets.append(local)
    if not entries:
        outcome_url = _entry_url(origin, "outcome")
        message = note or "no code is above its threshold for this note"
        entries.append(BundleEntry(fullUrl=outcome_url, resource=_information(message)))
        targets = [outcome_url]
    entries.append(
        BundleEntry(
            fullUrl=f"urn:uuid:{origin.prediction_id}", resource=provenance(origin, targets)
        )
    )
    return Bundle(
        type="collection",
        identifier=Identifier(system=URI_SYSTEM, value=f"urn:uuid:{origin.prediction_id}"),
        timestamp=origin.created_at,
        entry=entries,
    )


def search_bundle(resources: Sequence[CodedResource], base_url: str, self_url: str) -> Bundle:
    """A searchset of every match (the search returns all of them, or refuses)."""
    return Bundle(
        type="searchset",
        total=len(resources),
        link=[BundleLink(relation="self", url=self_url)],
        entry=[
            BundleEntry(
                fullUrl=f"{base_url}/{resource.get_resource_type()}/{resource.id}",
                resource=resource,
                search=BundleEntrySearch(mode="match"),
            )
            for resource in resources
        ]
        or None,
    )
