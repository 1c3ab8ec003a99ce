"""What the FHIR answer costs over the JSON one: CPU time to build a $code Bundle with
fhir.resources (every element validated) and to serialise it, against serialising the same
prediction as the JSON API's PredictionOut, for several numbers of codes above threshold and
evidence spans per code.

    python benchmarks/fhir_rendering.py --codes 1,3,5,10 --spans 5 --repeats 50
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _common import (  # noqa: E402
    HelpFormatter,
    busy_warning,
    command_line,
    emit,
    facts_list,
    fmt_ms,
    machine_facts,
    markdown_table,
    parse_int_list,
    summarize,
)
from fhir.resources.R4B.bundle import Bundle  # noqa: E402

from model.codes import CodeSystem  # noqa: E402
from service.fhir.resources import CodedResult, Origin, coding_bundle  # noqa: E402
from service.schemas import CodeOut, HighlightOut, ModelRef, PredictionOut  # noqa: E402

BASE_URL = "http://127.0.0.1:8000/fhir/r4"


def prediction(n_codes: int, n_spans: int) -> PredictionOut:
    """A prediction with `n_codes` codes above threshold, each with `n_spans` highlights."""
    codes = [
        CodeOut(
            code=f"R{10 + index}.9",
            description="Fever, unspecified",
            score=0.9 - index / 100,
            rank=index + 1,
            above_threshold=True,
            threshold=0.3,
            highlights=[
                HighlightOut(start=span * 20, end=span * 20 + 6, text="fiebre", weight=0.2)
                for span in range(n_spans)
            ],
        )
        for index in range(n_codes)
    ]
    return PredictionOut(
        prediction_id=uuid.uuid4(),
        created_at=datetime.now(UTC),
        note_id="DocumentReference/note-1",
        encounter_id="Encounter/1",
        model=ModelRef(name="bench", version="1"),
        codes=codes,
        elapsed_ms=40.0,
    )


def build(answer: PredictionOut) -> Bundle:
    origin = Origin(
        prediction_id=answer.prediction_id,
        created_at=answer.created_at,
        model=answer.model,
        subject="Patient/1",
        encounter="Encounter/1",
        document="DocumentReference/note-1",
    )
    results = [
        CodedResult(code.code, code.description, CodeSystem.ICD10_CM, "unconfirmed", code)
        for code in answer.codes
    ]
    return coding_bundle(origin, results, BASE_URL, None)


def cpu_ms(work: Callable[[], object], repeats: int) -> list[float]:
    """CPU time of each call (this process only: other work on the machine does not count)."""
    work()  # warm caches
    times = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        times.append((time.process_time() - started) * 1000.0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--codes", type=parse_int_list, default=[1, 3, 5, 10])
    parser.add_argument("--spans", type=int, default=5, help="evidence spans per code")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    facts = machine_facts(["fhir.resources", "fhir-core", "pydantic"])
    rows = []
    for n_codes in args.codes:
        answer = prediction(n_codes, args.spans)
        bundle = build(answer)
        size = len(bundle.model_dump_json(exclude_none=True))
        built = summarize(cpu_ms(lambda answer=answer: build(answer), args.repeats))
        dumped = summarize(
            cpu_ms(
                lambda bundle=bundle: bundle.model_dump_json(exclude_none=True),
                args.repeats,
            )
        )
        plain = summarize(cpu_ms(lambda answer=answer: answer.model_dump_json(), args.repeats))
        rows.append(
            [
                str(n_codes),
                str(args.spans),
                fmt_ms(built.p50, 2),
                fmt_ms(dumped.p50, 2),
                fmt_ms(built.p50 + dumped.p50, 2),
                fmt_ms(plain.p50, 3),
                f"{size:,}",
            ]
        )
    report = "\n\n".join(
        part
        for part in (
            f"```\n$ {command_line()}\n```",
            facts_list(facts),
            busy_warning(),
            markdown_table(
                [
                    "codes above threshold",
                    "spans per code",
                    "build ms (CPU p50)",
                    "serialise ms",
                    "FHIR total ms",
                    "JSON API ms",
                    "Bundle bytes",
                ],
                rows,
            ),
        )
        if part
    )
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
