"""The queue benchmark runs end to end on a small SQLite audit log and reports every row."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.conftest import run_script, table_rows


def test_queue_scale_reports_each_measurement(tmp_path: Path) -> None:
    out = tmp_path / "queue.md"
    result = run_script(
        "queue_scale.py",
        "--database-url",
        f"sqlite:///{tmp_path / 'queue.db'}",
        "--predictions",
        "60",
        "--codes",
        "40",
        "--limit",
        "10",
        "--repeats",
        "3",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    rows = table_rows(out.read_text(), "what (database work + response objects)")
    assert [row[0] for row in rows] == [
        "queue page, summaries (now)",
        "queue page, reviewed=false (now)",
        "queue page, every code row loaded (before)",
        "detail of one prediction, all codes",
    ]
    assert all(float(row[1]) > 0 and row[3] == "3" for row in rows)
    assert "60 predictions x 40 codes (2,400 code rows)" in out.read_text()
