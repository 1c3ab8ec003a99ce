"""The application factory: `create_app(settings)` builds the FastAPI app; nothing runs at import.

Start-up (the lifespan) connects to the database and refuses an un-migrated one, loads the model
bundle, and then warms the model up in the background: /healthz answers at once, /readyz and the
model routes answer 503 until one real inference has run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from model.runtime import OnnxPredictor
from service.api.errors import install_error_handlers
from service.api.fhir_http import install_fhir_errors
from service.api.middleware import (
    REQUEST_ID_HEADER,
    AuthenticationMiddleware,
    BodySizeLimitMiddleware,
    FailedKeyThrottle,
    FhirErrorMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from service.api.routes import (
    codes,
    docs,
    feedback,
    fhir,
    health,
    me,
    metrics,
    model,
    predictions,
    review,
)
from service.core.config import Settings, unknown_variables
from service.core.logging import configure_logging, get_logger
from service.core.metrics import Metrics
from service.core.security import KeyRing
from service.db.admin import check_migrated, head_revisions, known_revisions
from service.db.probe import DatabaseProbe
from service.db.session import UNAVAILABLE_ERRORS, make_engine, make_session_factory
from service.db.work import Database
from service.inference import InferenceService

PredictorFactory = Callable[[Settings], OnnxPredictor]

log = get_logger("app")


class DatabaseUnreachableError(RuntimeError):
    """The database did not answer at start-up; the message names the URL (without password)."""


def max_body_bytes(settings: Settings) -> int:
    """The largest body a valid request can have: a full batch of the longest notes, each
    character JSON-escaped (`\\uXXXX`, 6 bytes), plus room for the other fields."""
    return settings.max_batch_notes * (settings.max_note_chars * 6 + 4096) + 65536


def database_timeout(settings: Settings) -> float:
    """Longest a request waits on one unit of database work: a connection, then a statement
    (a few statements in a unit share the budget; the server's own timeout is per statement)."""
    return settings.db_pool_timeout_seconds + settings.db_statement_timeout_seconds


def load_predictor(settings: Settings) -> OnnxPredictor:
    return OnnxPredictor(
        settings.bundle_dir,
        threads=settings.inference_threads,
        max_batch_tokens=settings.inference_token_budget,
    )


def _version() -> str:
    try:
        return importlib.metadata.version("plant-icd")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


async def _warm_up(inference: InferenceService) -> None:
    started = time.perf_counter()
    try:
        await anyio.to_thread.run_sync(inference.warm_up)
    except Exception as error:
        inference.warm_up_error = f"{type(error).__name__}: {error}"
        log.error("warm-up failed; the service stays unready", exc_info=True)
        return
    log.info("model ready", extra={"warm_up_ms": round((time.perf_counter() - started) * 1e3)})


def _lifespan(
    predictor_factory: PredictorFactory,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        metrics_: Metrics = app.state.metrics
        shown_url = settings.redacted_database_url
        engine = make_engine(
            settings.database_url,
            connect_timeout=settings.db_connect_timeout_seconds,
            statement_timeout=settings.db_statement_timeout_seconds,
            pool_timeout=settings.db_pool_timeout_seconds,
        )
        try:
            await anyio.to_thread.run_sync(check_migrated, engine, shown_url)
        except UNAVAILABLE_ERRORS as error:
            engine.dispose()
            original = getattr(error, "orig", None) or error
            raise DatabaseUnreachableError(
                f"cannot reach the database {shown_url} ({type(original).__name__}: "
                f"{original}): check PLANT_ICD_DATABASE_URL and that the database is running"
            ) from None
        except BaseException:
            engine.dispose()
            raise
        app.state.engine = engine
        app.state.sessions = make_session_factory(engine)
        app.state.database = Database(app.state.sessions, timeout=database_timeout(settings))
        app.state.database_probe = DatabaseProbe(
            engine,
            head_revisions(),
            timeout=settings.readiness_timeout_seconds,
            known=known_revisions(),
        )
        if not settings.auth_enabled:
            log.warning(
                "no API keys configured: every caller is treated as admin (development only)"
            )
        warm_up: asyncio.Task[None] | None = None
        try:
            predictor = await anyio.to_thread.run_sync(predictor_factory, settings)
            inference = InferenceService(
                predictor,
                max_concurrent=settings.max_concurrent_inferences,
                metrics=metrics_,
                min_note_tokens=settings.min_note_tokens,
                token_budget=settings.inference_token_budget,
                max_tokens_in_flight=settings.max_tokens_in_flight,
            )
            metrics_.model_info.labels(name=predictor.name, version=predictor.version).set(1)
            app.state.inference = inference
            log.info(
                "model loaded",
                extra={
                    "model": predictor.name,
                    "version": predictor.version,
                    "codes": len(predictor.codes),
                    "code_system": inference.code_system,
                    "database": shown_url,
                },
            )
            warm_up = asyncio.create_task(_warm_up(inference))
            yield
        finally:
            if warm_up is not None:
                warm_up.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await warm_up
            app.state.inference = None
            engine.dispose()

    return lifespan


def create_app(
    settings: Settings | None = None, *, predictor_factory: PredictorFactory | None = None
) -> FastAPI:
    """Build the app for `settings` (default: read from PLANT_ICD_* variables).

    `predictor_factory` loads the model from the settings (default: the ONNX bundle at
    `bundle_dir`); tests pass their own to control warm-up.
    """
    settings = settings if settings is not None else Settings()
    configure_logging(settings.log_level)
    for warning in unknown_variables(os.environ):
        log.warning(warning)
    app_metrics = Metrics()
    app = FastAPI(
        title="PLANT-ICD coding service",
        version=_version(),
        description=(
            "ICD codes for clinical notes, with the evidence in the text for each code. "
            "Authenticate with `X-API-Key` (or `Authorization: Bearer`). Roles: `ehr` "
            "predicts; `coder` reads predictions and writes feedback; `admin` may do "
            "everything, including export and model information. Every prediction is "
            "recorded before it is returned; if the database is down the answer is 503."
        ),
        lifespan=_lifespan(predictor_factory or load_predictor),
        # Served by service.api.routes.docs from vendored assets, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = app_metrics
    keyring = KeyRing(settings.api_keys)
    app.state.keyring = keyring
    app.state.inference = None

    for router in (
        predictions.router,
        feedback.router,
        codes.router,
        model.router,
        me.router,
        health.router,
        review.router,
        docs.router,
        fhir.router,
    ):
        app.include_router(router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    install_error_handlers(app)
    install_fhir_errors(app)

    # Innermost first: the key is checked before the app reads a body, but after CORS answered a
    # preflight (which carries no key by design).
    key_throttle = FailedKeyThrottle(settings.auth_failures_per_minute)
    app.state.key_throttle = key_throttle
    if settings.auth_enabled:
        app.add_middleware(AuthenticationMiddleware, keyring=keyring, throttle=key_throttle)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Location", "Retry-After"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes(settings))
    app.add_middleware(SecurityHeadersMiddleware)
    # Added last, so it is outermost: it sees every response, CORS preflights included.
    app.add_middleware(RequestContextMiddleware, metrics=app_metrics)
    # Outside even that, so the 500 it writes for an unhandled error reaches FHIR clients as an
    # OperationOutcome too.
    app.add_middleware(FhirErrorMiddleware)
    return app
