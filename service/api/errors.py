"""Error responses: every 4xx/5xx body is `{"detail", "errors"?, "request_id"}` saying what to fix.

Validation errors never echo the input back (it may be a whole note). Database errors are logged
by type only: their text can hold statement parameters, i.e. note text.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import ProgrammingError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core.logging import get_logger, request_id_var
from service.db.session import UNAVAILABLE_ERRORS

log = get_logger("errors")


def error_body(detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, "request_id": request_id_var.get()}
    if errors:
        body["errors"] = errors
    return body


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    loc = tuple(error.get("loc", ()))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        position = loc[1] if len(loc) > 1 else "?"
        return (
            f"the request body is not valid JSON ({reason} at character {position}): send a "
            "JSON object"
        )
    if loc == ("body",) and kind in ("missing", "model_attributes_type", "dict_type"):
        return "the body must be a JSON object sent with Content-Type: application/json"
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    return f"{_location(loc)}: {message}"


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        {"loc": list(item.get("loc", ())), "msg": _message(item), "type": item.get("type")}
        for item in error.errors()
    ]
    detail = "; ".join(problem["msg"] for problem in problems) or "invalid request"
    return JSONResponse(error_body(detail, problems), status_code=422)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    cause = error.__cause__
    errors = None
    if error.status_code == 400 and isinstance(cause, UnicodeDecodeError):
        detail = (
            f"the request body is not valid UTF-8 (byte {cause.object[cause.start]:#04x} at "
            f"position {cause.start}): send JSON encoded as UTF-8"
        )
    elif error.status_code == 400 and cause is not None:
        detail = "the request body could not be read as JSON: send a UTF-8 JSON object"
    elif isinstance(error.detail, dict):
        detail = str(error.detail.get("detail", ""))
        errors = error.detail.get("errors")
    else:
        detail = str(error.detail)
    return JSONResponse(
        error_body(detail, errors), status_code=error.status_code, headers=error.headers
    )


async def _database_unavailable(request: Request, error: Exception) -> JSONResponse:
    retry_after = request.app.state.settings.retry_after_seconds
    original = getattr(error, "orig", None) or error
    log.warning(
        "database unavailable",
        extra={"error": type(original).__name__, "path": request.url.path},
    )
    return JSONResponse(
        error_body(
            "the database is unavailable, so nothing was recorded and no result is returned: "
            f"retry in {retry_after} s"
        ),
        status_code=503,
        headers={"Retry-After": str(retry_after)},
    )


# PostgreSQL's names for "the table or column is not there": the schema was downgraded (or never
# upgraded) under a running service. Retrying cannot help until someone migrates, but it is the
# database's state, not a bug, so 503 and a message naming the fix, never 500.
_MISSING_SCHEMA = ("UndefinedTable", "UndefinedColumn")


async def _programming_error(request: Request, error: Exception) -> JSONResponse:
    original = getattr(error, "orig", None) or error
    if type(original).__name__ not in _MISSING_SCHEMA:
        log.error("database programming error", extra={"error": type(original).__name__})
        return JSONResponse(error_body("internal error: report it with the request id"), 500)
    log.error("the database schema is not the one this service needs")
    retry_after = request.app.state.settings.retry_after_seconds
    return JSONResponse(
        error_body(
            "the database schema is not the one this service needs (was it downgraded?): an "
            "operator must run `plant-icd db upgrade`; nothing was recorded"
        ),
        status_code=503,
        headers={"Retry-After": str(retry_after)},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error_type in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_type, _database_unavailable)
    app.add_exception_handler(ProgrammingError, _programming_error)
