"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: it can serve).

Ready means the bundle is loaded, one real warm-up inference has run and the database answers;
until then 503, so a load balancer sends no traffic to an instance that would fail it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from service.db.session import UNAVAILABLE_ERRORS
from service.inference import InferenceService
from service.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


# HEAD as well (load balancers and uptime checkers probe with it); one operation in the schema.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="Liveness")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


def _ping(engine: Engine) -> str:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except UNAVAILABLE_ERRORS as error:
        return f"unavailable: {type(error.__cause__ or error).__name__}"
    return "ok"


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
    database = await run_in_threadpool(_ping, request.app.state.engine)
    ready = model_state == "ready" and database == "ok"
    body = ReadyOut(ready=ready, model=model_state, database=database)
    headers = {} if ready else {"Retry-After": str(request.app.state.settings.retry_after_seconds)}
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503, headers=headers)
