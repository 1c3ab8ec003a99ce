"""Smoke tests for benchmarks/load_service.py: a minimal run against a real uvicorn process on the
tiny bundle reports every backend and concurrency with no errors, the overhead verdict, and
leaves no server or PostgreSQL schema behind; timings are not checked, only that they are
numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.benchmarks.conftest import run_script, table_rows
from tests.service.service_testing import reachable_postgres

SCRIPT = "load_service.py"
REQUESTS = 6


def bench_schemas(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            query = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'plant_icd_bench%'"
            return set(connection.execute(sa.text(query)).scalars())
    finally:
        engine.dispose()


def minimal_run(bundle: Path, corpus: Path, backends: str) -> str:
    done = run_script(
        SCRIPT,
        *("--bundle", str(bundle), "--corpus", "jsonl", "--corpus-path", str(corpus)),
        *("--backends", backends, "--concurrency", "1,3", "--requests", str(REQUESTS)),
        *("--warmup", "1", "--server-log-level", "WARNING"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def check_report(report: str, backends: list[str]) -> None:
    assert report.startswith("## Service load")
    command = next(line for line in report.splitlines() if line.startswith("$ "))
    assert SCRIPT in command and "--requests" in command
    levels = table_rows(report, "backend", 0)
    assert [(row[0], row[1]) for row in levels] == [
        (backend, clients) for backend in backends for clients in ("1", "3")
    ]
    for row in levels:
        assert row[2:5] == [str(REQUESTS), "0", "0"]  # all answered 201: no errors, no 503
        for cell in row[5:]:
            assert float(cell) >= 0.0
    overhead = table_rows(report, "backend", 1)
    assert [row[0] for row in overhead] == backends
    assert all(row[5] in ("met", "NOT met") for row in overhead)
    for backend in backends:
        assert f"{backend}: HTTP + database add " in report


def test_minimal_run_on_sqlite(tiny_bundle: Path, notes_corpus: Path) -> None:
    check_report(minimal_run(tiny_bundle, notes_corpus, "sqlite"), ["sqlite"])


@pytest.mark.postgres
def test_minimal_run_on_postgres_drops_its_schema(tiny_bundle: Path, notes_corpus: Path) -> None:
    url, reason = reachable_postgres()
    if url is None:
        pytest.skip(f"PostgreSQL is unreachable ({reason})")
    before = bench_schemas(url)
    report = minimal_run(tiny_bundle, notes_corpus, "postgres")
    check_report(report, ["postgres"])
    assert bench_schemas(url) <= before


def test_unknown_backend_is_refused(tiny_bundle: Path) -> None:
    done = run_script(SCRIPT, "--bundle", str(tiny_bundle), "--backends", "mysql")
    assert done.returncode == 2
    assert "choose from sqlite, postgres" in done.stderr
