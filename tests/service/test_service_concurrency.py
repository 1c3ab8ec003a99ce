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


class RecordingPredictor(SlowPredictor):
    """A SlowPredictor that remembers the notes of each call, in call order."""

    delay = 0.2

    def __init__(self, bundle_dir: Path) -> None:
        super().__init__(bundle_dir)
        self.calls: list[list[str]] = []

    def predict(self, texts: Sequence[str], top_k: int | None = None) -> list[list[CodePrediction]]:
        self.calls.append(list(texts))
        return super().predict(texts, top_k)


@pytest.mark.anyio
async def test_a_short_note_is_not_stuck_behind_a_large_batch(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    predictors: list[RecordingPredictor] = []

    def factory(settings: Settings) -> OnnxPredictor:
        predictors.append(RecordingPredictor(settings.bundle_dir))
        return predictors[-1]

    # 16 notes of 30 characters, 2 per call of 64 tokens: 8 calls of 0.2 s, one at a time.
    settings = make_settings(sqlite_url, max_concurrent_inferences=1, inference_token_budget=64)
    app = create_app(settings, predictor_factory=factory)
    batch_notes = [{"text": f"Fever and cough, batch note {i:02d}"} for i in range(16)]
    async with started(app) as client:
        predictors[0].calls.clear()  # the warm-up's
        batch = asyncio.create_task(
            client.post(
                "/v1/predictions/batch", json={"notes": batch_notes}, headers=headers("ehr")
            )
        )
        await asyncio.sleep(0.1)  # the batch holds the only slot now
        begun = time.perf_counter()
        short = await client.post(
            "/v1/predictions", json={"text": "Chest pain today."}, headers=headers("ehr")
        )
        waited = time.perf_counter() - begun
        assert short.status_code == 201
        assert not batch.done()
        assert (await batch).status_code == 201
    # It waited for the chunk in progress only, then ran before the batch's other chunks.
    assert waited < 0.8
    calls = predictors[0].calls
    assert len(calls) == 9 and all(len(call) <= 2 for call in calls)
    assert calls[1] == ["Chest pain today."]


@pytest.mark.anyio
async def test_a_full_inference_queue_answers_503(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    class Held(SlowPredictor):
        delay = 0.5

    settings = make_settings(
        sqlite_url, max_concurrent_inferences=1, max_tokens_in_flight=100, retry_after_seconds=4
    )
    app = create_app(settings, predictor_factory=lambda s: Held(s.bundle_dir))
    notes = [{"text": "Fever and cough for three days."} for _ in range(3)]  # 3 x 31 tokens
    async with started(app) as client:
        first = asyncio.create_task(
            client.post("/v1/predictions/batch", json={"notes": notes}, headers=headers("ehr"))
        )
        await asyncio.sleep(0.1)
        refused = await client.post(
            "/v1/predictions", json={"text": "Chest pain today."}, headers=headers("ehr")
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "4"
        assert "inference queue is full" in refused.json()["detail"]
        assert (await first).status_code == 201
        again = await client.post(
            "/v1/predictions", json={"text": "Chest pain today."}, headers=headers("ehr")
        )
        assert again.status_code == 201
        metrics = (await client.get("/metrics")).text
    assert "plant_icd_inference_rejected_total 1.0" in metrics
    assert "plant_icd_inference_tokens_in_flight 0.0" in metrics
