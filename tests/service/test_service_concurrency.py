"""Concurrent predictions on both backends: every answer has its row, inference is bounded by the
setting, and the event loop stays free while the model works."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from model.prediction import CodePrediction
from model.runtime import OnnxPredictor
from service.core.config import Settings
from service.main import create_app
from tests.service.service_testing import headers


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SlowPredictor(OnnxPredictor):
    """The real predictor, held `delay` seconds per call, counting calls that overlap."""

    delay = 0.02

    def __init__(self, bundle_dir: Path) -> None:
        super().__init__(bundle_dir)
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def predict(self, texts: Sequence[str], top_k: int | None = None) -> list[list[CodePrediction]]:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.delay)
            return super().predict(texts, top_k)
        finally:
            with self._lock:
                self.running -= 1


@asynccontextmanager
async def started(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            for _ in range(3000):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            yield client


@pytest.mark.anyio
async def test_fifty_concurrent_predictions_give_fifty_rows(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    predictors: list[SlowPredictor] = []

    def factory(settings: Settings) -> OnnxPredictor:
        predictors.append(SlowPredictor(settings.bundle_dir))
        return predictors[-1]

    settings = make_settings(database_url, max_concurrent_inferences=2)
    app = create_app(settings, predictor_factory=factory)
    async with started(app) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/predictions",
                    json={"text": f"Fever and cough, note {index}.", "note_id": f"c-{index}"},
                    headers=headers("ehr"),
                )
                for index in range(50)
            )
        )
    assert [response.status_code for response in responses] == [201] * 50
    returned = {response.json()["prediction_id"] for response in responses}
    assert len(returned) == 50
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = set(connection.execute(sa.text("SELECT id FROM predictions")).scalars())
            codes = connection.execute(sa.text("SELECT count(*) FROM predicted_codes")).scalar()
    finally:
        engine.dispose()
    assert stored == returned
    assert codes == 50 * 6  # default_top_k 10 covers all six codes
    # Never more inferences at once than the setting, and really concurrent up to it.
    assert predictors[0].peak == 2


@pytest.mark.anyio
async def test_inference_does_not_block_the_event_loop(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    class VerySlow(SlowPredictor):
        delay = 0.6

    app = create_app(make_settings(sqlite_url), predictor_factory=lambda s: VerySlow(s.bundle_dir))
    async with started(app) as client:
        prediction = asyncio.create_task(
            client.post("/v1/predictions", json={"text": "Fever."}, headers=headers("ehr"))
        )
        await asyncio.sleep(0.1)  # the prediction is now inside the model
        assert not prediction.done()
        begun = time.perf_counter()
        health = await client.get("/healthz")
        answered_in = time.perf_counter() - begun
        assert health.status_code == 200
        assert not prediction.done()
        assert answered_in < 0.3
        assert (await prediction).status_code == 201
