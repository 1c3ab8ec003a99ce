"""The review queue returns summaries: it reads neither the note text nor the ranked code rows
(up to 1,000 per prediction) of the predictions it lists; the detail route returns them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.service.service_testing import Service, headers

NOTE = "Patient admitted with fever and a dry cough. Paciente con fiebre e hipertensión."


def test_the_queue_reads_no_code_rows_and_no_note_text(service: Service) -> None:
    created = [service.predict(NOTE, top_k=6) for _ in range(3)]
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine: sa.Engine = service.app.state.engine
    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        queue = service.http.get("/v1/predictions", headers=headers("coder"))
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert queue.status_code == 200, queue.text
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert selects, "the capture saw the queue's queries"
    assert not any(
        "predicted_codes.highlights" in s or "predicted_codes.description" in s for s in selects
    )
    assert not any("predictions.note_text" in s.split("FROM")[0] for s in selects)

    by_id = {item["prediction_id"]: item for item in queue.json()["items"]}
    for prediction in created:
        expected = [c["code"] for c in prediction["codes"] if c["above_threshold"]]
        assert expected, "the note has suggestions above threshold"
        item = by_id[prediction["prediction_id"]]
        assert item["codes_above_threshold"] == expected
        assert item["undecided"] == expected
        assert "codes" not in item and "note_text" not in item
        detail = service.http.get(
            f"/v1/predictions/{prediction['prediction_id']}", headers=headers("coder")
        ).json()
        assert len(detail["codes"]) == 6 and detail["note_text"] == NOTE
