"""FHIR over HTTP: content negotiation, reading a FHIR JSON body, and answering resources and
OperationOutcome errors as application/fhir+json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel

from service.fhir.outcome import FhirError, Problem, operation_outcome
from service.fhir.vocabulary import FHIR_JSON, JSON_MEDIA_TYPES, PLAIN_JSON


class FhirResponse(Response):
    """Names application/fhir+json as the FHIR routes' media type in OpenAPI."""

    media_type = FHIR_JSON


def to_json(resource: BaseModel) -> str:
    return resource.model_dump_json(exclude_none=True)


async def rendered(build: Callable[[], BaseModel]) -> str:
    """`build()` serialised, on a worker thread: fhir.resources validates and serialises every
    element in Python (a Bundle of ten coded resources with five evidence spans each takes
    about 35 ms of CPU), which must not stall the event loop that serves other requests."""
    return await anyio.to_thread.run_sync(lambda: to_json(build()))


def fhir_response(
    body: str | BaseModel,
    media_type: str = FHIR_JSON,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        body if isinstance(body, str) else to_json(body),
        status_code=status_code,
        media_type=f"{media_type}; charset=utf-8",
        headers=headers,
    )


async def fhir_error_response(request: Request, error: Exception) -> Response:
    """The app's handler for FhirError: an OperationOutcome with the error's status."""
    assert isinstance(error, FhirError)
    return fhir_response(
        operation_outcome(error.status, error.problems),
        status_code=error.status,
        headers=error.headers,
    )


def install_fhir_errors(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, fhir_error_response)


def negotiated_media_type(request: Request) -> str:
    """application/fhir+json unless the client asks for application/json; 406 for anything
    else (`_format` wins over Accept, as FHIR defines)."""
    wanted = request.query_params.get("_format") or request.headers.get("accept") or ""
    ranges = [part.split(";")[0].strip().lower() for part in wanted.split(",") if part.strip()]
    if not ranges:
        return FHIR_JSON
    for media_range in ranges:
        if media_range in (FHIR_JSON, "json", "*/*", "application/*"):
            return FHIR_JSON
        if media_range == PLAIN_JSON:
            return PLAIN_JSON
    where = "http._format" if request.query_params.get("_format") else "http.Accept"
    raise FhirError(
        406,
        [
            Problem(
                f"cannot answer as {wanted!r}: this server speaks FHIR JSON only; ask for "
                f"{FHIR_JSON} (or leave Accept out)",
                where,
                code="not-supported",
            )
        ],
    )


MediaTypeDep = Annotated[str, Depends(negotiated_media_type)]


async def read_json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() not in JSON_MEDIA_TYPES:
        shown = repr(content_type) if content_type else "missing"
        raise FhirError(
            415,
            [
                Problem(
                    f"Content-Type is {shown}: send the resource as {FHIR_JSON}",
                    "http.Content-Type",
                    code="not-supported",
                )
            ],
        )
    body = await request.body()
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        message = f"the body is not UTF-8 (byte {body[error.start]:#04x} at position "
        message += f"{error.start}): send FHIR JSON encoded as UTF-8"
    except json.JSONDecodeError as error:
        message = f"the body is not JSON ({error.msg} at line {error.lineno} column "
        message += f"{error.colno}): send a FHIR JSON resource"
    except RecursionError:
        message = "the body nests too deeply to be a FHIR resource"
    raise FhirError(400, [Problem(message, code="structure")])
