"""Named dependencies of the routes: settings, database session, the served model, the caller.

Authentication accepts `X-API-Key: <key>` or `Authorization: Bearer <key>`; a missing or unknown
key is 401, a known key without the route's role is 403 (admin may do everything).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from service.api.middleware import PRINCIPAL_SCOPE_KEY, FailedKeyThrottle
from service.core.config import Role, Settings
from service.core.logging import client_var
from service.core.metrics import Metrics
from service.core.security import (
    DEVELOPMENT_PRINCIPAL,
    MISSING_KEY_MESSAGE,
    UNKNOWN_KEY_MESSAGE,
    KeyRing,
    Principal,
)
from service.db.work import Database
from service.inference import InferenceService

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="an API key from `plant-icd keys create`"
)
_bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


# The getters below only read app.state, so they are async: FastAPI runs a sync dependency on a
# worker thread, a round trip per dependency per request (four on a prediction) for nothing.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_session(request: Request) -> Iterator[Session]:
    sessions: sessionmaker[Session] = request.app.state.sessions
    with sessions() as session:
        yield session


async def get_sessions(request: Request) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_inference(request: Request) -> InferenceService:
    """The served model once warm-up has run; 503 with Retry-After before that."""
    inference: InferenceService | None = getattr(request.app.state, "inference", None)
    retry_after = str(request.app.state.settings.retry_after_seconds)
    if inference is None or not inference.is_ready():
        state = "loading" if inference is None else inference.state
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the model is not ready ({state}); retry shortly (GET /readyz tells when)",
            headers={"Retry-After": retry_after},
        )
    return inference


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SessionDep = Annotated[Session, Depends(get_session)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
DatabaseDep = Annotated[Database, Depends(get_database)]
InferenceDep = Annotated[InferenceService, Depends(get_inference)]


async def get_principal(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    settings: Settings = request.app.state.settings
    checked: Principal | None = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if not settings.auth_enabled:
        principal = DEVELOPMENT_PRINCIPAL
    elif checked is not None:  # AuthenticationMiddleware found it before the body was read
        principal = checked
    else:
        presented = api_key or (bearer.credentials if bearer is not None else None)
        if not presented:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail=MISSING_KEY_MESSAGE,
                headers={"WWW-Authenticate": "Bearer"},
            )
        # Routes outside /v1/ (FHIR) are checked here: the same per-address throttle applies.
        throttle: FailedKeyThrottle = request.app.state.key_throttle
        address = request.client.host if request.client else "unknown"
        retry_after = throttle.retry_after(address)
        if retry_after is not None:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"too many unknown API keys from this address: wait {retry_after} s, "
                "then retry with a valid key",
                headers={"Retry-After": str(retry_after)},
            )
        keyring: KeyRing = request.app.state.keyring
        found = keyring.authenticate(presented)
        if found is None:
            throttle.record(address)
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail=UNKNOWN_KEY_MESSAGE,
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = found
    # Async on purpose: a sync dependency runs on a worker thread, and the access log would not
    # see the context variable set there.
    client_var.set(principal.name)
    return principal


def require_role(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting callers whose key has one of `roles` (or admin)."""

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.may(roles):
            allowed = ", ".join(dict.fromkeys([*roles, "admin"]))
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"the key {principal.name!r} has role {principal.role!r}; this needs one "
                f"of: {allowed}",
            )
        return principal

    return check


CallerDep = Annotated[Principal, Depends(get_principal)]
EhrDep = Annotated[Principal, Depends(require_role("ehr"))]
CoderDep = Annotated[Principal, Depends(require_role("coder"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
