"""Chaos: bounded traffic on a real uvicorn (127.0.0.1) while PostgreSQL, behind a TCP proxy the
test controls, is killed, restored, frozen and thawed.

What must hold throughout:
- no 5xx other than 503 (and every request gets an answer: none hangs past the client timeout);
- every 2xx response has its row, and retries with the same Idempotency-Key never add a second;
- a row whose response no client received is marked undelivered (`delivered_at` NULL);
- /readyz follows the database within 2 s, both ways, and itself answers within 2 s.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
import sqlalchemy as sa

from service.core.config import Settings
from service.main import create_app
from tests.service.service_testing import TcpProxy, headers, uvicorn_server

pytestmark = pytest.mark.postgres

CLIENTS = 4
CLIENT_TIMEOUT = 10.0
PAUSE = 0.05  # between one client's requests: bounded traffic
FOLLOW = 2.0  # readiness must follow the database within this


@dataclass
class Traffic:
    """What the clients saw; filled from their threads."""

    answers: list[tuple[str, int, str | None]] = field(default_factory=list)  # (note, status, id)
    failures: list[str] = field(default_factory=list)
    readiness: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, took, status)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


def _client(base: str, number: int, traffic: Traffic) -> None:
    with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as http:
        sequence = 0
        while not traffic.stop.is_set():
            note_id = f"chaos-{number}-{sequence}"
            key = str(uuid.uuid4())
            body = {"text": f"Fever and cough, day {sequence}.", "note_id": note_id}
            # Retry a 503 with the same key until it is answered or the run ends.
            while not traffic.stop.is_set():
                try:
                    response = http.post(
                        "/v1/predictions",
                        json=body,
                        headers={**headers("ehr"), "Idempotency-Key": key},
                    )
                except httpx.HTTPError as error:
                    with traffic.lock:
                        traffic.failures.append(f"{note_id}: {type(error).__name__}")
                    break
                identifier = response.json().get("prediction_id") if response.is_success else None
                with traffic.lock:
                    traffic.answers.append((note_id, response.status_code, identifier))
                if response.status_code != 503:
                    break
                time.sleep(PAUSE)
            sequence += 1
            time.sleep(PAUSE)


def _watch_readiness(base: str, traffic: Traffic) -> None:
    with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as http:
        while not traffic.stop.is_set():
            sent = time.monotonic()
            status = http.get("/readyz").status_code
            with traffic.lock:
                traffic.readiness.append((sent, time.monotonic() - sent, status))
            time.sleep(0.1)


def test_the_service_survives_a_database_killed_and_frozen(
    make_settings: Callable[..., Settings], proxied_postgres: tuple[str, str, TcpProxy]
) -> None:
    direct_url, proxied_url, proxy = proxied_postgres
    settings = make_settings(
        proxied_url,
        db_connect_timeout_seconds=1,
        db_statement_timeout_seconds=1,
        db_pool_timeout_seconds=1,
        readiness_timeout_seconds=1,
        retry_after_seconds=1,
    )
    traffic = Traffic()
    # (time, database up?) for each change, the first one at the start.
    timeline: list[tuple[float, bool]] = []
    with uvicorn_server(create_app(settings)) as base:
        deadline = time.monotonic() + 30
        while httpx.get(base + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the service never became ready"
            time.sleep(0.1)
        workers = [
            threading.Thread(target=_client, args=(base, number, traffic))
            for number in range(CLIENTS)
        ]
        workers.append(threading.Thread(target=_watch_readiness, args=(base, traffic)))
        for worker in workers:
            worker.start()
        timeline.append((time.monotonic(), True))
        for action, up, hold in (
            (None, True, 4.0),
            (proxy.stop, False, 5.0),  # killed: connections cut, new ones refused
            (proxy.start, True, 5.0),
            (proxy.freeze, False, 6.0),  # hung: connections open, nothing answered
            (proxy.thaw, True, 5.0),
        ):
            if action is not None:
                action()
                timeline.append((time.monotonic(), up))
            time.sleep(hold)
        traffic.stop.set()
        for worker in workers:
            worker.join(timeout=CLIENT_TIMEOUT + 5)
        time.sleep(0.5)  # the last delivery marks

    statuses = [status for _, status, _ in traffic.answers]
    assert not traffic.failures, traffic.failures[:5]
    assert statuses.count(201) > 20 and statuses.count(503) > 5, sorted(set(statuses))
    assert set(statuses) <= {201, 503}, sorted(set(statuses))

    engine = sa.create_engine(direct_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT id, note_id, delivered_at FROM predictions")
            ).all()
    finally:
        engine.dispose()
    stored = {row.id: row for row in rows}
    answered = {identifier for _, status, identifier in traffic.answers if status == 201}
    assert answered <= set(stored), "a 2xx response without its row"
    note_ids = [row.note_id for row in rows]
    assert len(note_ids) == len(set(note_ids)), "a retry with the same key made a second row"
    unanswered = [row for row in rows if row.id not in answered]
    assert all(row.delivered_at is None for row in unanswered), unanswered
    assert sum(row.delivered_at is not None for row in rows) >= len(answered) * 0.9

    ends = [*timeline[1:], (float("inf"), True)]
    for (changed, up), (until, _) in zip(timeline, ends, strict=True):
        settled = [
            (sent, took, status)
            for sent, took, status in traffic.readiness
            if changed + FOLLOW <= sent and sent + took < until
        ]
        assert settled, f"no readiness probe after the change at {changed:.1f}"
        expected = 200 if up else 503
        assert all(status == expected for _, _, status in settled), (up, settled)
    assert max(took for _, took, _ in traffic.readiness) < FOLLOW
