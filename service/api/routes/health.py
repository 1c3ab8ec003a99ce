"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: it can serve).

Ready means the bundle is loaded, one real warm-up inference has run, and the database answers
within `readiness_timeout_seconds` at the schema revision this code needs; until then 503, so a
load balancer sends no traffic to an instance that would fail it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.db.probe import DatabaseProbe
from service.inference import InferenceService
from service.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


# HEAD as well (load balancers and uptime checkers probe with it); one operation in the schema.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="Liveness")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    summary="Readiness",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "not ready; the body says why"}},
)
async def readyz(request: Request) -> JSONResponse:
    inference: InferenceService | None = getattr(request.app.state, "inference", None)
    model_state = "loading" if inference is None else inference.state
    probe: DatabaseProbe = request.app.state.database_probe
    database = await probe.state()
    ready = model_state == "ready" and database == "ok"
    body = ReadyOut(ready=ready, model=model_state, database=database)
    headers = {} if ready else {"Retry-After": str(request.app.state.settings.retry_after_seconds)}
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503, headers=headers)
