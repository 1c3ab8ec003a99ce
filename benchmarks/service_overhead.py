"""HTTP + database time of POST /v1/predictions apart from inference (issue 11, item 4).

The server is the real app (`service.main.create_app`, uvicorn as `plant-icd serve` runs it,
production settings, INFO logs, metrics on) over a real database, but its predictor replays
answers: a real `OnnxPredictor` on the bundle computes each note's ranked codes and highlights
once at start-up, and `predict` then returns them (the predictor time the service reports is
~0). Everything else is what a request costs in production: authentication, parsing, the
idempotency lookup, the abstention check (the note's tokens), the audit transaction, the delivery
mark, response encoding, logging and metrics. One client sends the notes one at a time.

    python benchmarks/service_overhead.py --bundle B --backends sqlite,postgres --requests 300
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx
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
    summarize,
)

from model.prediction import CodePrediction
from model.runtime import OnnxPredictor

BACKENDS = ("sqlite", "postgres")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_OVERHEAD_MS = 5.0
ROUTE = "/v1/predictions"


class ReplayPredictor(OnnxPredictor):
    """An OnnxPredictor whose `predict` returns answers computed once for `texts` (any other
    note, the warm-up note included, runs the graph)."""

    def __init__(self, bundle: Path, texts: Sequence[str], top_k: int, threads: int) -> None:
        super().__init__(bundle, threads=threads)
        self._answers = {
            text: OnnxPredictor.predict(self, [text], top_k)[0] for text in dict.fromkeys(texts)
        }

    def predict(self, texts: Sequence[str], top_k: int | None = None) -> list[list[CodePrediction]]:
        if all(text in self._answers for text in texts):
            return [self._answers[text][:top_k] for text in texts]
        return super().predict(texts, top_k)


def serve(args: argparse.Namespace) -> None:
    """The child process: the app with a replaying predictor on `args.port`."""
    import uvicorn

    from service.core.config import Settings
    from service.main import create_app

    texts = json.loads(Path(args.notes_file).read_text(encoding="utf-8"))
    settings = Settings(
        bundle_dir=args.bundle,
        database_url=args.database_url,
        api_keys=[{"name": "bench-ehr", "role": "ehr", "sha256": args.key_sha256}],
        environment="production",
        inference_threads=args.threads,
        max_concurrent_inferences=1,
        log_level="INFO",
    )
    app = create_app(
        settings,
        predictor_factory=lambda s: ReplayPredictor(s.bundle_dir, texts, args.top_k, args.threads),
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, log_config=None, access_log=False)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    args: argparse.Namespace, tree: Path, url: str, notes_file: Path, key_sha256: str
) -> tuple[subprocess.Popen[bytes], str, IO[bytes]]:
    """A server running the service code of source tree `tree`; (process, base URL, its log)."""
    port = free_port()
    command = [
        *(
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            "--bundle",
            str(args.bundle.resolve()),
        ),
        *("--port", str(port), "--database-url", url, "--key-sha256", key_sha256),
        *("--notes-file", str(notes_file), "--top-k", str(args.top_k)),
        *("--threads", str(args.threads)),
    ]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (the caller closes it with the server)
    environment = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    server = subprocess.Popen(command, stdout=log, stderr=log, env=environment, cwd=tree)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"error: the server exited:\n{log.read().decode()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return server, base, log
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("error: the server did not become ready in time")


def time_requests(
    bases: Sequence[str], key: str, texts: Sequence[str], n: int
) -> list[tuple[list[float], list[float]]]:
    """Per server, client wall time and the service's reported inference time per request (ms).
    The servers take turns request by request, so a busy spell of the machine is shared."""
    measured: list[tuple[list[float], list[float]]] = [([], []) for _ in bases]
    clients = [
        httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) for base in bases
    ]
    try:
        for index in range(n + 2):
            body = {"text": texts[index % len(texts)], "note_id": f"n{index}"}
            for client, (client_ms, inference_ms) in zip(clients, measured, strict=True):
                started = time.perf_counter()
                response = client.post(ROUTE, json=body)
                elapsed = (time.perf_counter() - started) * 1e3
                if response.status_code != 201:
                    raise SystemExit(f"error: {response.status_code} {response.text[:500]}")
                if index >= 2:  # two untimed requests first
                    client_ms.append(elapsed)
                    inference_ms.append(float(response.json()["elapsed_ms"]))
    finally:
        for client in clients:
            client.close()
    return measured


def measure_backend(
    args: argparse.Namespace, backend: str, texts: Sequence[str]
) -> list[list[str]]:
    """One row per source tree: the servers run side by side, each on its own database."""
    from load_service import postgres_database, sqlite_database

    from service.core.security import generate_key, hash_key
    from service.db import admin

    key = generate_key()
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        notes_file = Path(work) / "notes.json"
        notes_file.write_text(json.dumps(list(texts)), encoding="utf-8")
        bases = []
        for name, tree in args.tree_list:
            folder = Path(work) / name
            folder.mkdir()
            url = stack.enter_context(
                sqlite_database(folder) if backend == "sqlite" else postgres_database(args.pg_url)
            )
            admin.upgrade(url)
            server, base, log = start_server(args, tree, url, notes_file, hash_key(key))
            stack.callback(log.close)
            stack.callback(server.wait, 30)
            stack.callback(server.terminate)
            bases.append(base)
        measured = time_requests(bases, key, texts, args.requests)
    return [
        overhead_row(backend, name, client_ms, inference_ms)
        for (name, _), (client_ms, inference_ms) in zip(args.tree_list, measured, strict=True)
    ]


def overhead_row(
    backend: str, name: str, client_ms: Sequence[float], inference_ms: Sequence[float]
) -> list[str]:
    client = summarize(client_ms)
    overhead = summarize([c - i for c, i in zip(client_ms, inference_ms, strict=True)])
    verdict = "met" if overhead.p50 <= TARGET_OVERHEAD_MS else "NOT met"
    return [
        backend,
        name,
        str(client.n),
        fmt_ms(client.p50, 2),
        fmt_ms(client.p95, 2),
        fmt_ms(summarize(inference_ms).p50, 3),
        fmt_ms(overhead.p50, 2),
        fmt_ms(overhead.p95, 2),
        verdict,
    ]


def tree_commit(tree: Path) -> str:
    """The tree's commit, with '+ changes' when it has uncommitted ones."""

    def git(*command: str) -> str:
        done = subprocess.run(["git", "-C", str(tree), *command], capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return (
        f"{commit} + changes" if git("status", "--porcelain", "--", "service", "model") else commit
    )


def parse_trees(text: str) -> list[tuple[str, Path]]:
    """`before=../wt-base,after=.` -> [("before", Path), ("after", Path)]; a bare path is named
    by itself."""
    trees = []
    for part in (item.strip() for item in text.split(",") if item.strip()):
        name, _, path = part.rpartition("=")
        trees.append((name or path, Path(path)))
    return trees


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="PLANT bundle directory")
    parser.add_argument("--backends", default="sqlite,postgres", help=f"subset of {BACKENDS}")
    parser.add_argument("--pg-url", default=DEFAULT_POSTGRES_URL, help="PostgreSQL server URL")
    parser.add_argument("--corpus", default="codiesp", help="corpus name (codiesp, jsonl, ...)")
    parser.add_argument("--corpus-path", default=DEFAULT_CORPUS_PATH)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--notes", type=int, default=50, help="distinct notes, sent cycling")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per backend")
    parser.add_argument("--top-k", type=int, default=10, help="codes per answer (the default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument(
        "--trees",
        default=".",
        help="source trees whose service to serve, side by side: NAME=PATH,... (e.g. "
        "before=../wt-base,after=.); each server imports service/ and model/ from its tree",
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--key-sha256", help=argparse.SUPPRESS)
    parser.add_argument("--notes-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backend_list = [name.strip() for name in args.backends.split(",") if name.strip()]
    args.tree_list = parse_trees(args.trees)
    if not args.tree_list or any(not (tree / "service").is_dir() for _, tree in args.tree_list):
        parser.error("--trees: each PATH must be a source tree holding service/")
    if not args.backend_list or set(args.backend_list) - set(BACKENDS):
        parser.error(f"--backends: choose from {', '.join(BACKENDS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    facts = machine_facts(["fastapi", "starlette", "uvicorn", "pydantic", "sqlalchemy", "psycopg"])
    busy = busy_warning()
    texts = load_notes(args.corpus, args.corpus_path, args.split, lang=args.lang, limit=args.notes)
    rows = [row for backend in args.backend_list for row in measure_backend(args, backend, texts)]
    lines = [
        "## Service overhead (HTTP + database, inference replayed)",
        "",
        "```",
        f"$ {command_line()}",
        "```",
        "",
        facts_list([*facts, ("load average (1/5/15 min) at end", load_average())]),
        f"- bundle: {args.bundle}; {len(texts)} {args.corpus} {args.split} notes cycling, "
        f"top_k {args.top_k}, one client, one request at a time, 2 untimed requests first",
        "- service code: "
        + ", ".join(f"{name} = {tree_commit(tree)}" for name, tree in args.tree_list)
        + "; the servers run side by side and take turns request by request",
        "",
        *([busy, ""] if busy else []),
        "Client wall time per request; the predictor replays each note's answer, so the "
        "service's reported inference time is ~0 and overhead = client time - reported "
        "inference time, per request.",
        "",
        markdown_table(
            [
                "backend",
                "service code",
                "requests",
                "client p50 ms",
                "client p95 ms",
                "inference p50 ms",
                "overhead p50 ms",
                "overhead p95 ms",
                f"target p50 <= {TARGET_OVERHEAD_MS:g} ms",
            ],
            rows,
        ),
    ]
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
