"""Smoke test for benchmarks/service_overhead.py: two servers of this tree side by side on
SQLite, a few requests each; the table has a row per server and numbers in it."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.conftest import REPO, run_script, table_rows


def test_servers_side_by_side_report_their_overhead(
    tiny_bundle: Path, notes_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "overhead.md"
    done = run_script(
        "service_overhead.py",
        *("--bundle", str(tiny_bundle), "--corpus", "jsonl", "--corpus-path", str(notes_corpus)),
        *("--backends", "sqlite", "--notes", "4", "--requests", "5", "--threads", "1"),
        *("--trees", f"one={REPO},two={REPO}", "--out", str(out)),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8").strip() in done.stdout
    rows = table_rows(done.stdout, "backend")
    assert [row[:3] for row in rows] == [["sqlite", "one", "5"], ["sqlite", "two", "5"]]
    for row in rows:
        assert all(float(cell) >= 0 for cell in row[3:8])
        assert row[8] in {"met", "NOT met"}
