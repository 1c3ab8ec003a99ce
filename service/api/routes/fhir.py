"""HL7 FHIR R4: POST /fhir/r4/DocumentReference/$code codes a note sent as a DocumentReference,
GET /fhir/r4/Condition and /Procedure return the codes of recorded predictions with the coders'
decisions, GET /fhir/r4/metadata describes it all.

$code goes through the same path as POST /v1/predictions (the same model call, the same audit
row, the same Idempotency-Key), so the review queue and feedback work unchanged. Errors are
OperationOutcome resources with the JSON API's status codes; the JSON API's own errors on these
paths (keys, limits) are re-expressed by `FhirErrorMiddleware`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import partial
from typing import Annotated

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    Query,
    Request,
    Response,
)
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition

from service import crud
from service.api.convert import stored_prediction
from service.api.deps import (
    DatabaseDep,
    EhrDep,
    InferenceDep,
    MetricsDep,
    SettingsDep,
    require_role,
)
from service.api.fhir_http import (
    FhirResponse,
    MediaTypeDep,
    fhir_response,
    read_json_body,
    rendered,
)
from service.api.routes.predictions import IdempotencyKey, deliver, predict_and_record
from service.core.security import Principal
from service.db.models import Prediction
from service.db.work import Database
from service.fhir.capability import capability_statement
from service.fhir.documents import (
    CodeRequest,
    read_code_request,
)
from service.fhir.openapi import CODE_REQUEST_BODY, responses
from service.fhir.outcome import FhirError, Problem
from service.fhir.resources import (
    CodedResource,
    CodedResult,
    Origin,
    code_system_of,
    coded_resource,
    coding_bundle,
    parse_resource_id,
    search_bundle,
)
from service.fhir.vocabulary import (
    FHIR_CODE_SYSTEMS,
    Verification,
)
from service.inference import InferenceService
from service.schemas import ModelRef, PredictionOut

router = APIRouter(prefix="/fhir/r4", tags=["fhir"])

# Searches answer every match in one Bundle; past this many predictions they ask for a
# narrower search instead of paging.
MAX_SEARCH_PREDICTIONS = 200
ResultReaderDep = Annotated[Principal, Depends(require_role("ehr", "coder"))]


def _own_predictions_only(caller: Principal) -> str | None:
    """The key whose predictions `caller` may read: an EHR key reads the results of the notes it
    sent (coders and admins read every one), so one EHR never sees another's patients."""
    return caller.name if caller.role == "ehr" else None


# -- routes -------------------------------------------------------------------------------------


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


@router.get(
    "/metadata",
    summary="FHIR CapabilityStatement",
    response_class=FhirResponse,
    responses=responses("CapabilityStatement", "what this FHIR server does", 406),
)
def read_capabilities(request: Request, media_type: MediaTypeDep) -> Response:
    """The CapabilityStatement: $code, the Condition and Procedure searches, keys and roles.
    Served without a key, so a client can discover the server first."""
    version = request.app.version
    statement = capability_statement(base_url=_base_url(request), software_version=version)
    return fhir_response(statement, media_type)


@router.post(
    "/DocumentReference/$code",
    summary="Code a DocumentReference (FHIR)",
    response_class=FhirResponse,
    responses=responses(
        "Bundle",
        "a collection Bundle: Condition/Procedure per code above threshold, Provenance",
        400,
        401,
        403,
        406,
        413,
        415,
        422,
        503,
    ),
    openapi_extra={"requestBody": CODE_REQUEST_BODY},
)
async def code_document(
    request: Request,
    response: Response,
    background: BackgroundTasks,
    caller: EhrDep,
    inference: InferenceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    database: DatabaseDep,
    media_type: MediaTypeDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Suggested codes for the note in a DocumentReference, as FHIR resources.

    The note is recorded like any prediction (the Provenance id is its prediction id), so it
    enters the review queue; after review, GET /fhir/r4/Condition returns the decisions."""
    coding = read_code_request(await read_json_body(request))
    outcome = await predict_and_record(
        [coding.note],
        route="fhir",
        idempotency_key=idempotency_key,
        caller=caller,
        inference=inference,
        settings=settings,
        metrics=metrics,
        database=database,
        client_gone=request.is_disconnected,
    )
    (prediction,) = outcome.predictions
    body = await rendered(
        partial(_coding_answer, prediction, coding, inference, _base_url(request))
    )
    await deliver(outcome, request, response, background, database)
    return fhir_response(body, media_type, headers=dict(response.headers))


def _coding_answer(
    prediction: PredictionOut, coding: CodeRequest, inference: InferenceService, base_url: str
) -> Bundle:
    """The $code Bundle: the codes above threshold, unconfirmed, with their evidence."""
    origin = Origin(
        prediction_id=prediction.prediction_id,
        created_at=prediction.created_at,
        model=prediction.model,
        subject=coding.subject,
        encounter=coding.encounter,
        document=coding.document,
    )
    results = [
        CodedResult(
            code=code.code,
            description=code.description,
            system=code_system_of(code.code, inference.catalogues),
            verification="unconfirmed",
            suggestion=code,
        )
        for code in prediction.codes
        if code.above_threshold
    ]
    return coding_bundle(origin, results, base_url, prediction.abstention)


# -- reviewed results ---------------------------------------------------------------------------


def _verification(decision: str | None) -> Verification:
    if decision is None:
        return "unconfirmed"
    return "refuted" if decision == "rejected" else "confirmed"


def reviewed_results(row: Prediction, inference: InferenceService) -> list[CodedResult]:
    """A recorded prediction's codes as the coders left them: suggestions above threshold
    (unconfirmed until decided) and every code with a decision, in rank order, then the codes
    coders added."""
    detail = stored_prediction(row)
    latest = crud.current_decisions(list(row.feedback))
    results = []
    for code in detail.codes:
        decided = latest.get(code.code)
        if decided is None and not code.above_threshold:
            continue
        results.append(
            CodedResult(
                code=code.code,
                description=code.description,
                system=code_system_of(code.code, inference.catalogues),
                verification=_verification(decided.decision if decided else None),
                suggestion=code,
            )
        )
    suggested = {code.code for code in detail.codes}
    for added, event in latest.items():
        if added in suggested:
            continue
        info = inference.lookup(added)
        results.append(
            CodedResult(
                code=added,
                description=info.description if info is not None else "",
                system=code_system_of(added, inference.catalogues),
                verification=_verification(event.decision),
                suggestion=None,
            )
        )
    return results


def _origin(row: Prediction) -> Origin:
    return Origin(
        prediction_id=uuid.UUID(row.id),
        created_at=row.created_at,
        model=ModelRef(name=row.model_name, version=row.model_version),
        subject=row.subject_reference,
        encounter=row.encounter_id,
        document=row.note_id if (row.note_id or "").startswith("DocumentReference/") else None,
    )


def _resources_of(
    rows: Sequence[Prediction], inference: InferenceService, resource_type: str
) -> list[CodedResource]:
    resources = []
    for row in rows:
        origin = _origin(row)
        for result in reviewed_results(row, inference):
            if FHIR_CODE_SYSTEMS[result.system].resource_type == resource_type:
                resources.append(coded_resource(result, origin))
    return resources


def _references(value: str | None, resource_type: str) -> list[str]:
    """A reference search value as stored: `123` and `Encounter/123` both mean Encounter/123."""
    if value is None:
        return []
    return [value if "/" in value else f"{resource_type}/{value}"]


ReferenceParam = Annotated[str | None, Query(min_length=1, max_length=200)]


async def _search(
    request: Request,
    caller: Principal,
    database: Database,
    resource_type: str,
    *,
    encounter: str | None,
    subject: str | None,
    patient: str | None,
    prediction: uuid.UUID | None,
) -> list[Prediction]:
    """The predictions a search matches that `caller` may read, or FhirError."""
    if subject is not None and patient is not None and subject != patient:
        raise FhirError(
            422, [Problem("subject and patient name different patients: send one", "http.patient")]
        )
    encounters = _references(encounter, "Encounter")
    subjects = _references(subject or patient, "Patient")
    if not encounters and not subjects and prediction is None:
        raise FhirError(
            422,
            [
                Problem(
                    f"a {resource_type} search needs encounter, subject (or patient) or "
                    "prediction: this server does not list every code it has made",
                    "http.encounter",
                    code="required",
                )
            ],
        )
    rows, total = await database.run(
        partial(
            crud.find_by_references,
            prediction_id=None if prediction is None else str(prediction),
            encounter_ids=encounters,
            subject_references=subjects,
            client=_own_predictions_only(caller),
            limit=MAX_SEARCH_PREDICTIONS,
        ),
    )
    if total > MAX_SEARCH_PREDICTIONS:
        raise FhirError(
            422,
            [
                Problem(
                    f"{total} predictions match; a search answers at most "
                    f"{MAX_SEARCH_PREDICTIONS}: add encounter or prediction to narrow it",
                    "http.subject",
                    code="too-costly",
                )
            ],
        )
    return rows


def _search_answer(
    rows: Sequence[Prediction],
    inference: InferenceService,
    resource_type: str,
    base_url: str,
    self_url: str,
    verification: Verification | None = None,
) -> Bundle:
    resources = _resources_of(rows, inference, resource_type)
    if verification is not None:
        resources = [
            resource
            for resource in resources
            if isinstance(resource, Condition)
            and resource.verificationStatus is not None
            and resource.verificationStatus.coding is not None
            and resource.verificationStatus.coding[0].code == verification
        ]
    return search_bundle(resources, base_url, self_url)


@router.get(
    "/Condition",
    summary="Search coded diagnoses (FHIR)",
    response_class=FhirResponse,
    responses=responses("Bundle", "a searchset Bundle of Conditions", 401, 403, 406, 422, 503),
)
async def search_conditions(
    request: Request,
    caller: ResultReaderDep,
    inference: InferenceDep,
    database: DatabaseDep,
    media_type: MediaTypeDep,
    encounter: ReferenceParam = None,
    subject: ReferenceParam = None,
    patient: ReferenceParam = None,
    prediction: Annotated[uuid.UUID | None, Query(description="a prediction id")] = None,
    verification_status: Annotated[Verification | None, Query(alias="verification-status")] = None,
) -> Response:
    """The diagnosis codes of matching predictions with the coders' decisions: confirmed
    (accepted or added), refuted (rejected), unconfirmed (a suggestion not decided yet)."""
    rows = await _search(
        request,
        caller,
        database,
        "Condition",
        encounter=encounter,
        subject=subject,
        patient=patient,
        prediction=prediction,
    )
    answer = partial(
        _search_answer,
        rows,
        inference,
        "Condition",
        _base_url(request),
        str(request.url),
        verification_status,
    )
    return fhir_response(await rendered(answer), media_type)


@router.get(
    "/Procedure",
    summary="Search coded procedures (FHIR)",
    response_class=FhirResponse,
    responses=responses("Bundle", "a searchset Bundle of Procedures", 401, 403, 406, 422, 503),
)
async def search_procedures(
    request: Request,
    caller: ResultReaderDep,
    inference: InferenceDep,
    database: DatabaseDep,
    media_type: MediaTypeDep,
    encounter: ReferenceParam = None,
    subject: ReferenceParam = None,
    patient: ReferenceParam = None,
    prediction: Annotated[uuid.UUID | None, Query(description="a prediction id")] = None,
) -> Response:
    """The procedure codes of matching predictions with the coders' decisions (status
    completed: confirmed; entered-in-error: refuted; unknown: not decided yet)."""
    rows = await _search(
        request,
        caller,
        database,
        "Procedure",
        encounter=encounter,
        subject=subject,
        patient=patient,
        prediction=prediction,
    )
    answer = partial(
        _search_answer, rows, inference, "Procedure", _base_url(request), str(request.url)
    )
    return fhir_response(await rendered(answer), media_type)


async def _read(
    resource_id: str,
    resource_type: str,
    caller: Principal,
    inference: InferenceService,
    database: Database,
) -> str:
    parsed = parse_resource_id(resource_id)
    row = None
    if parsed is not None:
        prediction_id, _ = parsed
        row = await database.run(partial(crud.get_prediction, prediction_id=str(prediction_id)))
    if row is None or _own_predictions_only(caller) not in (None, row.client):
        raise _not_found(resource_id, resource_type)
    return await rendered(partial(_one_resource, row, resource_id, resource_type, inference))


def _one_resource(
    row: Prediction, resource_id: str, resource_type: str, inference: InferenceService
) -> CodedResource:
    for resource in _resources_of([row], inference, resource_type):
        if resource.id == resource_id:
            return resource
    raise _not_found(resource_id, resource_type)


def _not_found(resource_id: str, resource_type: str) -> FhirError:
    return FhirError(
        404,
        [
            Problem(
                f"no {resource_type} {resource_id!r}: ids are <prediction id>-<code>, as the "
                "$code answer and the searches give them",
                code="not-found",
            )
        ],
    )


@router.get(
    "/Condition/{resource_id}",
    summary="Read a coded diagnosis (FHIR)",
    response_class=FhirResponse,
    responses=responses("Condition", "the Condition", 401, 403, 404, 406, 422, 503),
)
async def read_condition(
    resource_id: str,
    caller: ResultReaderDep,
    inference: InferenceDep,
    database: DatabaseDep,
    media_type: MediaTypeDep,
) -> Response:
    return fhir_response(
        await _read(resource_id, "Condition", caller, inference, database), media_type
    )


@router.get(
    "/Procedure/{resource_id}",
    summary="Read a coded procedure (FHIR)",
    response_class=FhirResponse,
    responses=responses("Procedure", "the Procedure", 401, 403, 404, 406, 422, 503),
)
async def read_procedure(
    resource_id: str,
    caller: ResultReaderDep,
    inference: InferenceDep,
    database: DatabaseDep,
    media_type: MediaTypeDep,
) -> Response:
    return fhir_response(
        await _read(resource_id, "Procedure", caller, inference, database), media_type
    )
