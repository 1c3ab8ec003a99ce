"""The FHIR rendering benchmark runs and reports a row per number of codes."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.conftest import run_script, table_rows


def test_fhir_rendering_reports_each_size(tmp_path: Path) -> None:
    out = tmp_path / "fhir.md"
    result = run_script(
        "fhir_rendering.py", "--codes", "1,4", "--spans", "2", "--repeats", "3", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    rows = table_rows(out.read_text(), "codes above threshold")
    assert [row[:2] for row in rows] == [["1", "2"], ["4", "2"]]
    # More codes, a larger Bundle; every timing is measured.
    assert int(rows[1][6].replace(",", "")) > int(rows[0][6].replace(",", ""))
    assert all(float(cell) > 0 for row in rows for cell in row[2:6])
