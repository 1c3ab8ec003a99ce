"""Per-request context (request id in and out, latency metrics, access log) and a body size cap.

Pure ASGI middlewares (not BaseHTTPMiddleware), so context variables set by the routes are
visible here and streamed responses pass through untouched. An unhandled error becomes a JSON
500 carrying the request id; its traceback is logged, never sent.
"""

from __future__ import annotations

import json
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.logging import client_var, get_logger, request_id_var
from service.core.metrics import UNMEASURED_ROUTES, Metrics

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
