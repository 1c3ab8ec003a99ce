"""Load test of the coding service (issue 4): a real uvicorn process on 127.0.0.1 over SQLite and
PostgreSQL, POST /v1/predictions with real notes at several client concurrencies, and the overhead
of HTTP plus the audit database over the bare runtime on the same notes. Prints a Markdown report.

Run from the repository root, e.g. `python benchmarks/load_service.py --bundle bundles/plant-d-en`.
Every server, temporary database file and PostgreSQL schema it makes is removed on exit, Ctrl-C
included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
import sqlalchemy as sa
from _common import (
    DEFAULT_CORPUS_PATH,
    HelpFormatter,
    busy_warning,
    command_line,
    emit,
    facts_list,
    fmt_ms,
    load_average,
    load_notes,
    machine_facts,
    markdown_table,
    parse_int_list,
    summarize,
)
from sqlalchemy.engine import make_url

from model.bundle import load_bundle
from model.runtime import OnnxPredictor
from service.core.config import Settings, normalize_database_url
from service.core.security import generate_key, hash_key
from training.console import progress_bar

BACKENDS = ("sqlite", "postgres")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_OVERHEAD_MS = 5.0
KEY_NAME = "bench-ehr"
SCHEMA_PREFIX = "plant_icd_bench_"
ROUTE = "/v1/predictions"


@dataclass
class LevelResult:
    """One backend at one concurrency: what the clients saw."""

    backend: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)  # 201 answers, client side
    server_inference_ms: list[float] = field(default_factory=list)  # their elapsed_ms
    errors: int = 0  # answers other than 201 and 503, and transport failures
    unavailable: int = 0  # 503 answers
    wall_s: float = 0.0
    first_error: str | None = None

    def fail(self, message: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or message


# -- databases -------------------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_database(folder: Path) -> Iterator[str]:
    """A new SQLite file in `folder`; removed afterwards."""
    path = folder / f"audit-{uuid.uuid4().hex[:8]}.db"
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh schema on the server, as the service's URL (search_path set); dropped afterwards."""
    schema = f"{SCHEMA_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(server_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
            yield url.render_as_string(hide_password=False)
        finally:
            with engine.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


def postgres_version(server_url: str) -> str:
    """The server's version; exits with a message when it cannot be reached."""
    engine = sa.create_engine(server_url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            return str(connection.execute(sa.text("SHOW server_version")).scalar_one())
    except sa.exc.SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        shown = make_url(server_url).render_as_string(hide_password=True)
        raise SystemExit(
            f"error: PostgreSQL at {shown} is unreachable ({type(cause).__name__}: {cause}); "
            "start it, pass --postgres-url, or leave it out with --backends sqlite"
        ) from None
    finally:
        engine.dispose()


def migrate(database_url: str) -> None:
    """`plant-icd db upgrade --database-url URL`, the command operators run."""
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "db", "upgrade", "--database-url", database_url],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"error: migrating the benchmark database failed:\n{done.stderr}")


# -- the server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_environment(
    database_url: str, key_sha256: str, args: argparse.Namespace
) -> dict[str, str]:
    """This process's environment without any PLANT_ICD_* it had, plus the benchmark's own."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PLANT_ICD_")}
    env.update(
        {
            "PLANT_ICD_ENVIRONMENT": "production",
            "PLANT_ICD_DATABASE_URL": database_url,
            "PLANT_ICD_API_KEYS": json.dumps(
                [{"name": KEY_NAME, "role": "ehr", "sha256": key_sha256}]
            ),
            "PLANT_ICD_MAX_CONCURRENT_INFERENCES": str(args.max_concurrent_inferences),
            "PLANT_ICD_LOG_LEVEL": args.server_log_level,
        }
    )
    if args.inference_threads is not None:
        env["PLANT_ICD_INFERENCE_THREADS"] = str(args.inference_threads)
    return env


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def running_server(
    bundle: Path, env: dict[str, str], log_path: Path, startup_timeout: float
) -> Iterator[str]:
    """`plant-icd serve` in its own process (and session, so a Ctrl-C reaches only us and we stop
    it); yields its base URL once /readyz answers 200."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--bundle",
        str(bundle),
    ]
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + startup_timeout
        with httpx.Client(base_url=base_url, timeout=5.0) as client:
            while True:
                if process.poll() is not None:
                    raise SystemExit(
                        f"error: the server exited with {process.returncode} before it was "
                        f"ready; its log ({log_path}) ends:\n{_log_tail(log_path)}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"error: the server was not ready within {startup_timeout:.0f} s; its "
                        f"log ({log_path}) ends:\n{_log_tail(log_path)}"
                    )
                time.sleep(0.2)
        yield base_url
    finally:
        stop_server(process)


# -- load ------------------------------------------------------------------------------------------


async def run_level(
    base_url: str,
    key: str,
    notes: Sequence[str],
    *,
    backend: str,
    concurrency: int,
    requests: int,
    seconds: float,
    warmup: int,
    top_k: int,
    timeout: float,
) -> LevelResult:
    """`concurrency` clients, each sending one request at a time, until `requests` are sent or
    `seconds` have passed; notes are taken in order, cycling."""
    result = LevelResult(backend, concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"X-API-Key": key}, timeout=timeout, limits=limits
    ) as client:

        async def post(index: int) -> httpx.Response:
            body = {"text": notes[index % len(notes)], "note_id": f"bench-{index}", "top_k": top_k}
            return await client.post(ROUTE, json=body)

        # Untimed: opens every connection and runs a few requests per client first.
        warm = await asyncio.gather(
            *(post(i) for i in range(warmup * concurrency)), return_exceptions=True
        )
        for answer in warm:
            if isinstance(answer, BaseException) or answer.status_code != 201:
                shown = answer if isinstance(answer, BaseException) else answer.text[:200]
                raise SystemExit(f"error: a warm-up request failed: {shown}")

        counter = itertools.count()
        deadline = time.perf_counter() + seconds

        async def client_loop() -> None:
            while True:
                index = next(counter)
                if index >= requests or time.perf_counter() >= deadline:
                    return
                started = time.perf_counter()
                try:
                    response = await post(index)
                except httpx.HTTPError as error:
                    result.fail(f"{type(error).__name__}: {error}")
                    continue
                elapsed_ms = (time.perf_counter() - started) * 1e3
                if response.status_code == 201:
                    result.latencies_ms.append(elapsed_ms)
                    result.server_inference_ms.append(float(response.json()["elapsed_ms"]))
                elif response.status_code == 503:
                    result.unavailable += 1
                else:
                    result.fail(f"HTTP {response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
    return result


def runtime_baseline(
    bundle: Path, notes: Sequence[str], count: int, seconds: float, threads: int | None, top_k: int
) -> list[float]:
    """`OnnxPredictor.predict` in this process, one note at a time, the notes the concurrency-1
    run sends, in the same order (ms each)."""
    predictor = OnnxPredictor(bundle, threads=threads)
    predictor.warm_up()
    for index in range(min(3, count)):
        predictor.predict([notes[index % len(notes)]], top_k=top_k)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    with progress_bar() as progress:
        task = progress.add_task("runtime in-process", total=count, status="")
        for index in range(count):
            if time.perf_counter() >= deadline:
                break
            started = time.perf_counter()
            predictor.predict([notes[index % len(notes)]], top_k=top_k)
            latencies.append((time.perf_counter() - started) * 1e3)
            progress.update(task, advance=1)
    del predictor
    gc.collect()
    return latencies


# -- report ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Settings.model_fields
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle directory")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="server and database to make a temporary schema in",
    )
    parser.add_argument("--concurrency", default="1,8,32", help="client counts, comma-separated")
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per level")
    parser.add_argument(
        "--seconds", type=float, default=120.0, help="time limit per level (and runtime baseline)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per client")
    parser.add_argument("--top-k", type=int, default=10, help="top_k sent with each note")
    parser.add_argument(
        "--inference-threads", type=int, default=2, help="PLANT_ICD_INFERENCE_THREADS"
    )
    parser.add_argument(
        "--max-concurrent-inferences",
        type=int,
        default=defaults["max_concurrent_inferences"].default,
        help="PLANT_ICD_MAX_CONCURRENT_INFERENCES",
    )
    parser.add_argument("--server-log-level", default="INFO", help="PLANT_ICD_LOG_LEVEL")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds")
    parser.add_argument("--corpus", default="codiesp", help="corpus name (codiesp, jsonl, ...)")
    parser.add_argument(
        "--corpus-path", default=DEFAULT_CORPUS_PATH, help="relative to the current directory"
    )
    parser.add_argument("--split", default="dev", help="corpus split to read")
    parser.add_argument("--lang", default="en", help="CodiEsp language (en, es)")
    parser.add_argument("--codes", default="D", help="CodiEsp code set (D, P, DP)")
    parser.add_argument("--notes", type=int, help="use only the first N notes; unset: all")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    args.backend_list = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(args.backend_list) - set(BACKENDS))
    if unknown or not args.backend_list:
        parser.error(f"--backends: unknown {unknown}; choose from {', '.join(BACKENDS)}")
    try:
        args.concurrency_list = parse_int_list(args.concurrency)
    except ValueError as error:
        parser.error(str(error))
    for name in ("requests", "top_k", "inference_threads", "max_concurrent_inferences"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup < 0 or args.seconds <= 0:
        parser.error("--warmup must be >= 0 and --seconds > 0")
    try:
        args.postgres_url = normalize_database_url(args.postgres_url)
    except ValueError as error:
        parser.error(str(error))
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the Ctrl-C path, so every `finally` stops servers and drops databases.
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    facts = machine_facts(["numpy", "onnxruntime", "fastapi", "uvicorn", "sqlalchemy", "httpx"])
    busy = busy_warning()
    bundle = load_bundle(args.bundle)
    notes = load_notes(
        args.corpus,
        args.corpus_path,
        args.split,
        lang=args.lang,
        codes=args.codes,
        limit=args.notes,
    )
    database_versions = (
        [f"SQLite {sqlite3.sqlite_version}"] if "sqlite" in args.backend_list else []
    )
    if "postgres" in args.backend_list:
        database_versions.append(f"PostgreSQL {postgres_version(args.postgres_url)}")

    # The bare runtime first, while no server competes for the cores.
    runtime_ms = runtime_baseline(
        bundle.directory, notes, args.requests, args.seconds, args.inference_threads, args.top_k
    )
    runtime = summarize(runtime_ms)

    key = generate_key()
    results: list[LevelResult] = []
    with tempfile.TemporaryDirectory(prefix="plant-icd-bench-") as scratch:
        folder = Path(scratch)
        for backend in args.backend_list:
            database = (
                sqlite_database(folder)
                if backend == "sqlite"
                else postgres_database(args.postgres_url)
            )
            with database as database_url:
                migrate(database_url)
                env = server_environment(database_url, hash_key(key), args)
                log_path = folder / f"server-{backend}.log"
                with running_server(
                    bundle.directory, env, log_path, args.startup_timeout
                ) as base_url:
                    for concurrency in args.concurrency_list:
                        print(
                            f"{backend}: {concurrency} clients, up to {args.requests} requests "
                            f"or {args.seconds:.0f} s",
                            file=sys.stderr,
                        )
                        results.append(
                            asyncio.run(
                                run_level(
                                    base_url,
                                    key,
                                    notes,
                                    backend=backend,
                                    concurrency=concurrency,
                                    requests=args.requests,
                                    seconds=args.seconds,
                                    warmup=args.warmup,
                                    top_k=args.top_k,
                                    timeout=args.request_timeout,
                                )
                            )
                        )

    rows = []
    for level in results:
        latency = summarize(level.latencies_ms)
        inference = summarize(level.server_inference_ms)
        throughput = len(level.latencies_ms) / level.wall_s if level.wall_s > 0 else float("nan")
        rows.append(
            [
                level.backend,
                str(level.concurrency),
                str(len(level.latencies_ms)),
                str(level.errors),
                str(level.unavailable),
                fmt_ms(latency.p50),
                fmt_ms(latency.p95),
                fmt_ms(latency.p99),
                fmt_ms(throughput),
                fmt_ms(inference.p50),
            ]
        )

    overhead_rows = []
    verdicts = []
    first = min(args.concurrency_list)
    for level in results:
        if level.concurrency != first:
            continue
        service = summarize(level.latencies_ms)
        # Paired per request: the same request's client time minus its in-server inference.
        outside = summarize(
            [
                total - inference
                for total, inference in zip(
                    level.latencies_ms, level.server_inference_ms, strict=True
                )
            ]
        )
        overhead = service.p50 - runtime.p50
        verdict = "met" if overhead <= TARGET_OVERHEAD_MS else "NOT met"
        overhead_rows.append(
            [
                level.backend,
                fmt_ms(service.p50, 2),
                fmt_ms(runtime.p50, 2),
                fmt_ms(overhead, 2),
                fmt_ms(outside.p50, 2),
                verdict,
            ]
        )
        verdicts.append(
            f"{level.backend}: HTTP + database add {overhead:.2f} ms at p50 "
            f"(target <= {TARGET_OVERHEAD_MS:.0f} ms): **{verdict}**."
        )

    errors = sum(level.errors for level in results)
    lines = [
        "## Service load",
        "",
        "```",
        f"$ {command_line()}",
        "```",
        "",
        facts_list(
            [
                *facts,
                ("load average (1/5/15 min) at end", load_average()),
                ("databases", ", ".join(database_versions)),
                (
                    "server",
                    "`python -m service.cli serve` (= `plant-icd serve`: uvicorn, 1 worker) on "
                    f"127.0.0.1, PLANT_ICD_ENVIRONMENT=production, inference threads "
                    f"{args.inference_threads}, max concurrent inferences "
                    f"{args.max_concurrent_inferences}, log level {args.server_log_level}, note "
                    "text stored, metrics on; one temporary `ehr` API key; database migrated with "
                    "`plant-icd db upgrade` (SQLite: temporary file; PostgreSQL: temporary schema)",
                ),
                (
                    "bundle",
                    f"{args.bundle} ({bundle.metadata.name} {bundle.metadata.version}, "
                    f"{len(bundle.metadata.codes)} codes, max_tokens {bundle.metadata.max_tokens})",
                ),
                (
                    "notes",
                    f"{len(notes)} {args.corpus} {args.split} notes (lang {args.lang}, codes "
                    f"{args.codes}), sent in order, cycling; top_k {args.top_k}",
                ),
                (
                    "load",
                    f"httpx async clients on the same machine (they share its cores with the "
                    f"server), each one request at a time, {args.warmup} untimed requests per "
                    f"client first, then up to {args.requests} requests or {args.seconds:.0f} s "
                    "per level",
                ),
            ]
        ),
        "",
        *([busy, ""] if busy else []),
        "### Latency and throughput, POST /v1/predictions",
        "",
        "Latency is client-side wall time per request (ms); errors are answers other than 201 "
        "and 503, and failed connections; 503s are counted apart. The last column is the "
        "inference time the service reports in `elapsed_ms`.",
        "",
        markdown_table(
            [
                "backend",
                "clients",
                "ok",
                "errors",
                "503",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "req/s",
                "inference p50 ms",
            ],
            rows,
        ),
        "",
        f"### Overhead over the bare runtime ({first} client{'s' if first > 1 else ''})",
        "",
        f"Runtime: `OnnxPredictor.predict` in-process, one note at a time, the same "
        f"{runtime.n} requests' notes in the same order, {args.inference_threads} threads: p50 "
        f"{runtime.p50:.2f} ms, p95 {runtime.p95:.2f} ms. Overhead = service p50 minus runtime "
        "p50. The column after it is, per request, client time minus the inference time the "
        "service reports for that request (its p50): the same requests, so free of drift "
        "between the two runs; it includes any wait for an inference slot (none at 1 client).",
        "",
        markdown_table(
            [
                "backend",
                "service p50 ms",
                "runtime p50 ms",
                "overhead ms",
                "p50 of (service - inference) ms",
                f"target <= {TARGET_OVERHEAD_MS:.0f} ms",
            ],
            overhead_rows,
        ),
        "",
        *verdicts,
        "",
    ]
    if errors:
        first_errors = "; ".join(
            f"{level.backend}/{level.concurrency}: {level.first_error}"
            for level in results
            if level.first_error
        )
        lines += [f"**{errors} requests failed** (first per level: {first_errors}).", ""]
    emit("\n".join(lines), args.out)
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted: servers stopped, temporary databases removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
