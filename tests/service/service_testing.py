"""Helpers shared by the service tests (used by conftest.py and by the test modules).

API keys per role, a started-app wrapper, a fresh PostgreSQL schema per test, a real uvicorn in a
thread, and a TCP proxy in front of PostgreSQL that a test can stop (the database disappears).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.core.config import ApiKey, Settings
from service.core.security import hash_key
from service.main import PredictorFactory, create_app

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent

KEYS = {
    "ehr": "test-ehr-key-0123456789",
    "coder": "test-coder-key-0123456789",
    "admin": "test-admin-key-0123456789",
}
API_KEYS = [
    ApiKey.model_validate({"name": f"{role}-client", "role": role, "sha256": hash_key(key)})
    for role, key in KEYS.items()
]
SCHEMA_PREFIX = "plant_icd_test_"
CANDIDATE_POSTGRES_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)


def headers(role: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[role]}


# -- PostgreSQL ---------------------------------------------------------------------------------


def reachable_postgres() -> tuple[str | None, str]:
    """The first URL that answers, or None with the reasons each failed."""
    override = os.environ.get("PLANT_ICD_TEST_POSTGRES_URL")
    candidates = [override] if override else list(CANDIDATE_POSTGRES_URLS)
    reasons = []
    for url in candidates:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return url, ""
        except sa.exc.SQLAlchemyError as error:
            cause = getattr(error, "orig", None) or error
            reasons.append(f"{make_url(url).render_as_string()}: {type(cause).__name__}")
        finally:
            engine.dispose()
    return None, "; ".join(reasons)


def session_schema_prefix() -> str:
    return f"{SCHEMA_PREFIX}{os.getpid()}_"


def drop_session_schemas(server_url: str) -> None:
    engine = sa.create_engine(server_url)
    try:
        with engine.begin() as connection:
            schemas = connection.execute(
                sa.text("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, :prefix)"),
                {"prefix": session_schema_prefix()},
            ).scalars()
            for schema in list(schemas):
                connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


def with_search_path(server_url: str, schema: str, *, port: int | None = None) -> str:
    url = make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    if port is not None:
        url = url.set(port=port)
    return url.render_as_string(hide_password=False)


@contextmanager
def postgres_schema(server_url: str) -> Iterator[str]:
    """A fresh, empty schema; yields its name, drops it (and everything in it) afterwards."""
    schema = f"{session_schema_prefix()}{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(server_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


# -- running apps -------------------------------------------------------------------------------


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        if time.monotonic() > deadline or response.json()["model"].startswith("failed"):
            raise AssertionError(f"the app never became ready: {response.json()}")
        time.sleep(0.02)


@dataclass
class Service:
    """A started app, its HTTP client and a direct engine onto its database."""

    app: FastAPI
    http: TestClient
    settings: Settings
    engine: sa.Engine

    def predict(self, text: str, role: str = "ehr", **fields: Any) -> dict[str, Any]:
        response = self.http.post(
            "/v1/predictions", json={"text": text, **fields}, headers=headers(role)
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def feedback(self, prediction_id: str, *decisions: tuple[str, str], **fields: Any) -> Any:
        body = {
            "coder_id": fields.pop("coder_id", "coder-1"),
            "decisions": [{"code": code, "decision": decision} for code, decision in decisions],
            **fields,
        }
        return self.http.post(
            f"/v1/predictions/{prediction_id}/feedback", json=body, headers=headers("coder")
        )

    def count(self, table: str) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())

    def metric(self, name: str, **labels: str) -> float:
        """A sample's value from /metrics (0.0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.http.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(key) == value for key, value in labels.items()
                ):
                    return float(sample.value)
        return 0.0


@contextmanager
def running_service(
    settings: Settings, predictor_factory: PredictorFactory | None = None, ready: bool = True
) -> Iterator[Service]:
    app = create_app(settings, predictor_factory=predictor_factory)
    engine = sa.create_engine(settings.database_url)
    try:
        with TestClient(app) as http:
            if ready:
                wait_ready(http)
            yield Service(app=app, http=http, settings=settings, engine=engine)
    finally:
        engine.dispose()


@contextmanager
def uvicorn_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` with a real uvicorn on a free loopback port; yields the base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# -- a database that disappears -----------------------------------------------------------------


class TcpProxy:
    """Forwards a loopback port to `target`; `stop()` refuses new connections and cuts the open
    ones (as a crashed database or a broken network would), `start()` resumes on the same port.
    `freeze()` keeps every connection open but forwards nothing, as a hung database (or a
    stalled network) would: bytes are held until `thaw()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._running.set()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def stop(self) -> None:
        self._running.clear()
        if self._accepting is not None:
            self._accepting.join()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for connection in self._open:
                with suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._open.clear()
        self._flowing.set()  # held pumps wake up, find their sockets closed and end

    def _accept(self) -> None:
        assert self._listener is not None
        while self._running.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                self._flowing.wait()
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
