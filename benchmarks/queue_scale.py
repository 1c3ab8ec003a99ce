"""The review queue at scale: GET /v1/predictions's database work and response building over an
audit log of N predictions with C ranked codes each (10,000 x 1,000 = 10 million code rows).

It fills a database (migrated to head) with synthetic predictions, then times one queue page as
the service builds it (summaries: no note text, no code rows but the few above threshold) and,
for comparison, as it was built before (every code row of the page loaded), plus the detail of
one prediction with all its codes. Each figure is the median and p95 over `--repeats` pages at
random offsets.

    python benchmarks/queue_scale.py --database-url postgresql+psycopg://postgres@127.0.0.1/test \
        --schema plant_icd_bench --predictions 10000 --codes 1000
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402
from _common import (  # noqa: E402
    HelpFormatter,
    busy_warning,
    command_line,
    emit,
    facts_list,
    fmt_ms,
    machine_facts,
    markdown_table,
    summarize,
)
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import selectinload  # noqa: E402

from service import crud  # noqa: E402
from service.api.convert import prediction_summary, stored_prediction  # noqa: E402
from service.db import admin  # noqa: E402
from service.db.models import Prediction  # noqa: E402
from service.db.session import make_engine, make_session_factory  # noqa: E402

NOTE = "Patient admitted with fever and a dry cough; history of hypertension. " * 20


def _prediction_rows(n: int, above: int) -> list[dict[str, object]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "id": str(uuid.UUID(int=index + 1)),
            "created_at": start + timedelta(seconds=index),
            "note_id": f"note-{index}",
            "encounter_id": f"enc-{index // 3}",
            "note_text": NOTE,
            "note_sha256": "0" * 64,
            "note_chars": len(NOTE),
            "model_name": "bench",
            "model_version": "1",
            "top_k": 1000,
            "elapsed_ms": 40.0,
            "client": "ehr-bench",
            "delivered_at": start + timedelta(seconds=index),
        }
        for index in range(n)
    ]


def _code_lines(n_predictions: int, n_codes: int, above: int) -> Callable[[int], str]:
    """Tab-separated predicted_codes rows for prediction `index` (COPY text format)."""
    highlights = json.dumps([{"start": 23, "end": 28, "weight": 0.6}])

    def lines(index: int) -> str:
        prediction_id = str(uuid.UUID(int=index + 1))
        out = io.StringIO()
        for rank in range(1, n_codes + 1):
            score = 1.0 / (rank + 1)
            spans = highlights if rank <= 3 else "[]"
            flag = "t" if rank <= above else "f"
            out.write(
                f"{prediction_id}\t{rank}\tC{rank:05d}\tdescription of code {rank}\t"
                f"{score:.6f}\t{flag}\t0.5\t{spans}\n"
            )
        return out.getvalue()

    return lines


CODE_COLUMNS = (
    "prediction_id",
    "rank",
    "code",
    "description",
    "score",
    "above_threshold",
    "threshold",
    "highlights",
)


def populate(engine: sa.Engine, n_predictions: int, n_codes: int, above: int) -> float:
    """Insert the synthetic audit log; returns the seconds it took."""
    started = time.perf_counter()
    predictions = sa.table("predictions", *(sa.column(name) for name in _prediction_rows(1, 1)[0]))
    lines = _code_lines(n_predictions, n_codes, above)
    rows = _prediction_rows(n_predictions, above)
    with engine.begin() as connection:
        connection.execute(sa.insert(predictions), rows)
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            columns = ", ".join(CODE_COLUMNS)
            with cursor.copy(f"COPY predicted_codes ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for index in range(n_predictions):
                    copy.write(lines(index))
                    if index % 1000 == 999:
                        print(f"  {index + 1} / {n_predictions} predictions", file=sys.stderr)
            raw.commit()
        finally:
            raw.close()
    else:
        codes = sa.table("predicted_codes", *(sa.column(name) for name in CODE_COLUMNS))
        for first in range(0, n_predictions, 100):
            batch = []
            for index in range(first, min(first + 100, n_predictions)):
                for line in lines(index).splitlines():
                    values = line.split("\t")
                    batch.append(
                        {
                            "prediction_id": values[0],
                            "rank": int(values[1]),
                            "code": values[2],
                            "description": values[3],
                            "score": float(values[4]),
                            "above_threshold": values[5] == "t",
                            "threshold": 0.5,
                            "highlights": values[7],  # JSON text, as the column holds it
                        }
                    )
            with engine.begin() as connection:
                connection.execute(sa.insert(codes), batch)
            print(f"  {first + 100} / {n_predictions} predictions", file=sys.stderr)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


def time_pages(
    sessions: Callable[[], object], work: Callable[[object, int], object], offsets: list[int]
) -> list[float]:
    timings = []
    for offset in offsets:
        with sessions() as session:  # type: ignore[attr-defined]
            started = time.perf_counter()
            work(session, offset)
            timings.append((time.perf_counter() - started) * 1000.0)
    return timings


def summary_page(session: object, offset: int, limit: int, reviewed: bool | None) -> object:
    page, total = crud.list_predictions(
        session,  # type: ignore[arg-type]
        filters=crud.PredictionFilters(reviewed=reviewed),
        limit=limit,
        offset=offset,
    )
    return [prediction_summary(row, tally) for row, tally in page], total


def eager_page(session: object, offset: int, limit: int) -> object:
    """The queue as it was before: each page's predictions with every code row loaded."""
    statement = (
        sa.select(Prediction)
        .options(selectinload(Prediction.codes))
        .order_by(Prediction.created_at.desc(), Prediction.id.desc())
        .limit(limit)
        .offset(offset)
    )
    rows = list(session.scalars(statement))  # type: ignore[attr-defined]
    return [[code.code for code in row.codes if code.above_threshold] for row in rows]


def detail(session: object, offset: int) -> object:
    row = crud.get_prediction(session, prediction_id=str(uuid.UUID(int=offset + 1)))  # type: ignore[arg-type]
    assert row is not None
    return stored_prediction(row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in /tmp")
    parser.add_argument("--schema", default=None, help="PostgreSQL: a schema to create and drop")
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--codes", type=int, default=1_000, help="ranked codes per prediction")
    parser.add_argument("--above", type=int, default=5, help="codes above threshold each")
    parser.add_argument("--limit", type=int, default=50, help="queue page size")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="do not drop the schema afterwards")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    url = args.database_url or f"sqlite:////tmp/plant-icd-queue-{args.predictions}x{args.codes}.db"
    server = None
    if args.schema:
        server = sa.create_engine(url)
        with server.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE'))
            connection.execute(sa.text(f'CREATE SCHEMA "{args.schema}"'))
        url = (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={args.schema}"})
            .render_as_string(hide_password=False)
        )
    elif url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    facts = machine_facts(["sqlalchemy", "psycopg"])
    try:
        admin.upgrade(url)
        engine = make_engine(url, statement_timeout=600)
        print(f"filling {args.predictions} x {args.codes} code rows ...", file=sys.stderr)
        fill_seconds = populate(engine, args.predictions, args.codes, args.above)
        sessions = make_session_factory(engine)
        rng = random.Random(0)
        offsets = [
            rng.randrange(0, max(1, args.predictions - args.limit)) for _ in range(args.repeats)
        ]
        results = {
            "queue page, summaries (now)": time_pages(
                sessions, lambda s, o: summary_page(s, o, args.limit, None), offsets
            ),
            "queue page, reviewed=false (now)": time_pages(
                sessions, lambda s, o: summary_page(s, o, args.limit, False), offsets
            ),
            "queue page, every code row loaded (before)": time_pages(
                sessions, lambda s, o: eager_page(s, o, args.limit), offsets
            ),
            "detail of one prediction, all codes": time_pages(sessions, detail, offsets),
        }
        engine.dispose()
    finally:
        if server is not None:
            if not args.keep:
                with server.begin() as connection:
                    connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE'))
            server.dispose()
    rows = []
    for name, timings in results.items():
        summary = summarize(timings)
        rows.append([name, fmt_ms(summary.p50), fmt_ms(summary.p95), str(summary.n)])
    backend = make_url(url).get_backend_name()
    report = "\n\n".join(
        part
        for part in (
            "## Review queue at scale",
            f"`{command_line()}`",
            busy_warning(),
            facts_list(
                [
                    *facts,
                    ("database", backend),
                    (
                        "audit log",
                        f"{args.predictions:,} predictions x {args.codes:,} codes "
                        f"({args.predictions * args.codes:,} code rows), {args.above} above "
                        f"threshold each; filled in {fill_seconds:.0f} s",
                    ),
                    ("page", f"{args.limit} predictions, {args.repeats} random offsets"),
                ]
            ),
            markdown_table(
                ["what (database work + response objects)", "p50 ms", "p95 ms", "n"], rows
            ),
        )
        if part
    )
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
