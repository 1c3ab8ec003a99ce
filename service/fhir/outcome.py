"""Errors as OperationOutcome: the FHIR routes' own problems (with the FHIRPath of each) and every
other error the service answers on /fhir/ (authentication, limits, validation of query
parameters), re-expressed from the API's JSON error body with the same status code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.operationoutcome import OperationOutcome, OperationOutcomeIssue

# The issue type (http://hl7.org/fhir/issue-type) that best names each HTTP status.
_ISSUE_TYPES = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    413: "too-long",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    503: "transient",
}
# Where FastAPI's validation errors point outside the body: R4 names HTTP parameters and
# headers as `http.<name>` in OperationOutcome.issue.location.
_HTTP_PARTS = ("query", "header", "path", "cookie")


def issue_type(status: int) -> str:
    return _ISSUE_TYPES.get(status, "exception" if status >= 500 else "processing")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: what to fix, and where (a FHIRPath into the resource
    sent, or `http.<name>` for a header or query parameter)."""

    message: str
    path: str | None = None
    code: str | None = None  # issue type; default: the one for the answer's status


class FhirError(Exception):
    """A request the FHIR routes refuse; answered as an OperationOutcome with `status`."""

    def __init__(
        self,
        status: int,
        problems: Sequence[Problem],
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.problems = list(problems)
        self.headers = headers or {}
        super().__init__("; ".join(problem.message for problem in self.problems))


def fhir_path(root: str, loc: Sequence[str | int]) -> str:
    """`Parameters` + ('parameter', 0, 'resource') -> `Parameters.parameter[0].resource`."""
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def operation_outcome(status: int, problems: Sequence[Problem]) -> OperationOutcome:
    issues = []
    for problem in problems:
        issue: dict[str, Any] = {
            "severity": "fatal" if status >= 500 else "error",
            "code": problem.code or issue_type(status),
            "diagnostics": problem.message,
        }
        if problem.path is not None:
            key = "location" if problem.path.startswith("http.") else "expression"
            issue[key] = [problem.path]
        issues.append(OperationOutcomeIssue.model_validate(issue))
    return OperationOutcome(issue=issues)


def _problem_from_api_error(error: dict[str, Any]) -> Problem:
    loc = [part for part in error.get("loc", []) if isinstance(part, str | int)]
    message = str(error.get("msg", "invalid request"))
    if loc and loc[0] in _HTTP_PARTS and len(loc) > 1:
        return Problem(message, f"http.{loc[1]}")
    if loc and loc[0] == "body":
        return Problem(message, fhir_path("Resource", loc[1:]) if len(loc) > 1 else None)
    return Problem(message)


def outcome_from_api_error(status: int, body: dict[str, Any]) -> OperationOutcome:
    """The OperationOutcome saying what the API's JSON error `{"detail", "errors"?}` says."""
    errors = body.get("errors")
    problems = (
        [_problem_from_api_error(error) for error in errors if isinstance(error, dict)]
        if isinstance(errors, list)
        else []
    )
    if not problems:
        problems = [Problem(str(body.get("detail") or "the request failed"))]
    return operation_outcome(status, problems)
