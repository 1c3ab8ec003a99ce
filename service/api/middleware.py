"""Per-request context (request id in and out, latency metrics, access log), a body size cap,
security headers, and authentication of /v1/ requests before their body is read.

Pure ASGI middlewares (not BaseHTTPMiddleware), so context variables set by the routes are
visible here and streamed responses pass through untouched. An unhandled error becomes a JSON
500 carrying the request id; its traceback is logged, never sent.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections import deque

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.logging import client_var, get_logger, request_id_var
from service.core.metrics import UNMEASURED_ROUTES, Metrics
from service.core.security import MISSING_KEY_MESSAGE, UNKNOWN_KEY_MESSAGE, KeyRing
from service.fhir.outcome import outcome_from_api_error
from service.fhir.vocabulary import FHIR_JSON

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a caller's id only if it is short and plain: it goes into every log line.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE = "<unmatched>"

log = get_logger("access")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


def _route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/predictions/{prediction_id}`), never the raw path
    of an unmatched request, so metric labels stay few."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template:
        return str(template)
    # Starlette's own routes (/docs, /openapi.json) set no "route", only their endpoint; their
    # paths are fixed strings.
    if scope.get("endpoint") is not None:
        return str(scope.get("path", UNMATCHED_ROUTE))
    return UNMATCHED_ROUTE


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        id_token = request_id_var.set(request_id)
        client_token = client_var.set(None)
        status_code = 500
        started_response = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status_code = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"path": scope.get("path")})
            status_code = 500
            if not started_response:
                await self._internal_error(send, request_id)
        finally:
            elapsed = time.perf_counter() - started
            template = _route_template(scope)
            if template not in UNMEASURED_ROUTES:
                self.metrics.request_latency.labels(
                    method=scope["method"], route=template, status=str(status_code)
                ).observe(elapsed)
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": template,
                        "status": status_code,
                        "duration_ms": round(elapsed * 1000.0, 2),
                    },
                )
            client_var.reset(client_token)
            request_id_var.reset(id_token)

    @staticmethod
    async def _internal_error(send: Send, request_id: str) -> None:
        body = json.dumps(
            {
                "detail": "internal error: report it with the request id",
                "request_id": request_id,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class BodySizeLimitMiddleware:
    """413 for a body over `max_bytes`, before it is read into memory.

    A declared Content-Length is checked up front; a chunked body is counted as it arrives.
    The per-note character limit gives the precise message; this only stops memory abuse.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> HTTPException:
        return HTTPException(
            413,
            detail=f"the request body is over {self.max_bytes} bytes: send fewer or shorter notes",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next(
            (value for name, value in scope.get("headers", []) if name == b"content-length"), None
        )
        oversized = declared is not None and declared.isdigit() and int(declared) > self.max_bytes
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            if oversized:
                raise self._too_large()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counted_receive, send)


# -- security headers ---------------------------------------------------------------------------

# Responses under these prefixes can hold note text or highlights cut from it: no cache (browser,
# proxy) may keep a copy.
NO_STORE_PREFIXES = ("/v1/", "/fhir/")


class SecurityHeadersMiddleware:
    """`X-Content-Type-Options: nosniff` on every response; `Cache-Control: no-store` on /v1/
    and /fhir/."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = str(scope.get("path", "")).startswith(NO_STORE_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if no_store:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- authentication before the body -------------------------------------------------------------

PRINCIPAL_SCOPE_KEY = "plant_icd.principal"
AUTHENTICATED_PREFIXES = ("/v1/", "/fhir/")
# Served without a key: a FHIR client reads the CapabilityStatement before it has one.
OPEN_PATHS = frozenset({"/fhir/r4/metadata"})
THROTTLE_WINDOW_SECONDS = 60.0
# Addresses remembered at once; beyond it the oldest are forgotten (memory stays bounded even
# when failures come from many addresses).
THROTTLE_MAX_ADDRESSES = 10_000


class FailedKeyThrottle:
    """Counts unknown keys per client address over a sliding minute."""

    def __init__(self, per_minute: int, window: float = THROTTLE_WINDOW_SECONDS) -> None:
        self.per_minute = per_minute
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str, now: float) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures

    def retry_after(self, address: str, now: float | None = None) -> int | None:
        """Seconds until `address` may present a key again, or None when it may now."""
        now = time.monotonic() if now is None else now
        failures = self._recent(address, now)
        if failures is None or len(failures) < self.per_minute:
            return None
        return max(1, math.ceil(failures[0] + self.window - now))

    def record(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        failures = self._recent(address, now)
        if failures is None:
            if len(self._failures) >= THROTTLE_MAX_ADDRESSES:
                del self._failures[next(iter(self._failures))]
            failures = self._failures[address] = deque()
        failures.append(now)


def presented_key(scope: Scope) -> str | None:
    """The key from `X-API-Key`, else from `Authorization: Bearer`."""
    api_key = bearer = None
    for name, value in scope.get("headers", []):
        if name == b"x-api-key":
            api_key = value.decode("latin-1")
        elif name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                bearer = credentials.strip()
    return api_key or bearer


async def _send_json(
    send: Send, status: int, body: dict[str, object], headers: dict[str, str]
) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def requires_key(path: str) -> bool:
    return path.startswith(AUTHENTICATED_PREFIXES) and path not in OPEN_PATHS


class AuthenticationMiddleware:
    """Checks the API key of every /v1/ and /fhir/ request before anything reads its body.

    FastAPI parses the body before it runs dependencies, so a check in a dependency alone would
    let a caller without a key make the service read and parse up to the body limit. The found
    principal is put in the scope for `get_principal`; roles stay with the routes. Unknown keys
    count against the caller's address: past `per_minute` in a minute, 429 with Retry-After.
    """

    def __init__(self, app: ASGIApp, keyring: KeyRing, throttle: FailedKeyThrottle) -> None:
        self.app = app
        self.keyring = keyring
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not requires_key(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        if not key:
            await self._unauthorized(send, MISSING_KEY_MESSAGE)
            return
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        retry_after = self.throttle.retry_after(address)
        if retry_after is not None:
            log.warning("failed API keys throttled", extra={"address": address})
            await _send_json(
                send,
                429,
                {
                    "detail": f"too many unknown API keys from this address: wait {retry_after} "
                    "s, then retry with a valid key",
                    "request_id": request_id_var.get(),
                },
                {"Retry-After": str(retry_after)},
            )
            return
        principal = self.keyring.authenticate(key)
        if principal is None:
            self.throttle.record(address)
            await self._unauthorized(send, UNKNOWN_KEY_MESSAGE)
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal
        await self.app(scope, receive, send)

    @staticmethod
    async def _unauthorized(send: Send, detail: str) -> None:
        await _send_json(
            send,
            401,
            {"detail": detail, "request_id": request_id_var.get()},
            {"WWW-Authenticate": "Bearer"},
        )


# -- FHIR errors --------------------------------------------------------------------------------

FHIR_PREFIX = "/fhir/"


class FhirErrorMiddleware:
    """On /fhir/ paths, re-expresses the API's JSON errors (`{"detail", "errors"?}`: a missing
    key, a body over the limit, an invalid query parameter, an internal error) as an
    OperationOutcome with the same status and headers, so a FHIR client reads every answer.

    Outermost, so it also sees the 500 that RequestContextMiddleware writes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(FHIR_PREFIX):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_as_fhir(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
                if message["status"] >= 400 and content_type.startswith("application/json"):
                    held = message  # an API error: rewritten once its body is whole
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await self._send_outcome(send, held, b"".join(chunks))
                return
            await send(message)

        await self.app(scope, receive, send_as_fhir)

    @staticmethod
    async def _send_outcome(send: Send, start: Message, body: bytes) -> None:
        try:
            error = json.loads(body)
        except ValueError:
            error = {}
        status = int(start["status"])
        outcome = outcome_from_api_error(status, error if isinstance(error, dict) else {})
        payload = outcome.model_dump_json(exclude_none=True).encode()
        headers = MutableHeaders(raw=list(start.get("headers", [])))
        headers["content-type"] = f"{FHIR_JSON}; charset=utf-8"
        headers["content-length"] = str(len(payload))
        await send({**start, "headers": headers.raw})
        await send({"type": "http.response.body", "body": payload})
