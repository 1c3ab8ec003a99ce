"""What the command line prints when its output is not a terminal: tables whole as Markdown (the
same values `--format json` gives, none cut at 80 columns), evidence marked as [[...]] in plain
text, help without padding, and training progress as one line per stage and epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from model.tables import Table, format_value, print_tables, to_markdown
from tests.model.bundle_factory import build_tiny_bundle
from training.cli import app
from training.cli_inference import mark_evidence
from training.console import LineProgress
from training.progress import ProgressEvent

REPO = Path(__file__).resolve().parents[2]
NOTE = (
    "Patient admitted with fever and cough | day 2.\nFever again at night; history of hypertension."
)


def piped(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`plant-icd ARGS` with stdout a pipe, as in `plant-icd ... | cat`."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    result = subprocess.run(
        [sys.executable, "-m", "plant_icd.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result


def markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Every `### title` Markdown table in `text`: title -> rows as {column: cell}."""
    tables: dict[str, list[dict[str, str]]] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("### "):
            continue
        header = _cells(lines[index + 2])
        rows = []
        for row_line in lines[index + 4 :]:
            if not row_line.startswith("|"):
                break
            rows.append(dict(zip(header, _cells(row_line), strict=True)))
        tables[line[4:]] = rows
    return tables


def _cells(line: str) -> list[str]:
    # Split on pipes that are not escaped, then unescape.
    cells, current, escaped = [], "", False
    for character in line.strip()[1:-1]:
        if escaped:
            current += character
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == "|":
            cells.append(current.strip())
            current = ""
        else:
            current += character
    cells.append(current.strip())
    return [cell.replace("<br>", "\n") for cell in cells]


def assert_same_tables(markdown: dict[str, list[dict[str, str]]], document: dict[str, Any]) -> None:
    """The Markdown tables hold every column and every value of the JSON ones, whole."""
    assert list(markdown) == [table["title"] for table in document["tables"]]
    for table in document["tables"]:
        shown = markdown[table["title"]]
        assert len(shown) == len(table["rows"])
        for shown_row, row in zip(shown, table["rows"], strict=True):
            assert list(shown_row) == table["columns"]
            for column, value in row.items():
                expected = "-" if value is None else format_value(value)
                assert shown_row[column] == expected, (table["title"], column)


# -- tables ---------------------------------------------------------------------------------------


def test_markdown_keeps_every_cell_whole() -> None:
    long = "x" * 150
    table = Table.of(
        "t", ("name", "value", "note"), [("a|b", 0.123456, long), ("c", float("nan"), "")]
    )
    text = to_markdown(table)
    assert long in text
    assert "a\\|b" in text and "| - |" in text
    assert text.splitlines()[3] == "|---|---:|---|"
    assert markdown_tables(text)["t"][0] == {"name": "a|b", "value": "0.1235", "note": long}


def test_boxes_fold_long_cells_instead_of_cutting_them(tmp_path: Path) -> None:
    long = "unseen-" + "y" * 120
    path = tmp_path / "out.txt"
    with path.open("w") as stream:
        print_tables([Table.of("t", ("bucket", "micro f1"), [(long, 0.5)])], "table", stream=stream)  # type: ignore[arg-type]
    drawn = path.read_text()
    assert "…" not in drawn
    assert "".join(line.strip("│ ") for line in drawn.splitlines()).count("y") == 120


def test_evaluate_piped_prints_every_column_and_value(
    synthetic_codiesp: Path, tmp_path: Path
) -> None:
    model = tmp_path / "baseline"
    trained = CliRunner().invoke(
        app, ["baseline", "train", "--path", str(synthetic_codiesp), "--out", str(model)]
    )
    assert trained.exit_code == 0, trained.output
    common = ["evaluate", "--model", str(model), "--path", str(synthetic_codiesp), "--split", "dev"]

    shown = piped(*common, "--out", str(tmp_path / "a")).stdout
    document = json.loads(piped(*common, "--out", str(tmp_path / "b"), "--format", "json").stdout)

    assert "…" not in shown and "─" not in shown  # Markdown, nothing cut
    tables = markdown_tables(shown)
    assert_same_tables(tables, document)
    buckets = tables["by training frequency"]
    assert {"train frequency", "n codes", "micro f1", "macro f1 mean", "map"} <= set(buckets[0])
    assert [row["train frequency"] for row in buckets] == ["unseen", "1-2", "3-10", ">10"]
    assert buckets[0]["n codes"] == "0"  # counts print as counts
    assert any(len(line) > 80 for line in shown.splitlines())  # wider than 80 columns, whole
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    summary = {row["metric"]: row["value"] for row in tables[document["tables"][0]["title"]]}
    assert summary["map"] == format_value(metrics["map"])


def test_predict_piped_marks_evidence_and_json_has_the_api_shape(tmp_path: Path) -> None:
    bundle = build_tiny_bundle(tmp_path / "bundle")
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")

    document = json.loads(
        piped("predict", "--bundle", str(bundle), str(note), "--format", "json").stdout
    )
    (prediction,) = document["predictions"]
    assert prediction["note"] == str(note)
    codes = prediction["codes"]
    assert [code["rank"] for code in codes] == list(range(1, len(codes) + 1))
    for code in codes:
        # The API's CodeOut fields, offsets into the note as read.
        assert set(code) == {
            "code",
            "description",
            "score",
            "rank",
            "above_threshold",
            "threshold",
            "highlights",
        }
        assert code["above_threshold"] == (code["score"] >= code["threshold"])
        for highlight in code["highlights"]:
            assert NOTE[highlight["start"] : highlight["end"]] == highlight["text"]

    shown = piped("predict", "--bundle", str(bundle), str(note)).stdout
    (rows,) = markdown_tables(shown).values()
    assert [row["code"] for row in rows] == [code["code"] for code in codes]
    for row, code in zip(rows, codes, strict=True):
        assert row["description"] == code["description"]
        assert row["score"] == format_value(round(code["score"], 4))
        assert row["threshold"] == format_value(round(code["threshold"], 4))
        assert row["above"] == ("yes" if code["above_threshold"] else "no")
    best = codes[0]
    marked = shown.split(f"evidence for {best['code']} in [[...]]:\n\n", 1)[1].rstrip("\n")
    assert marked.replace("[[", "").replace("]]", "") == NOTE  # the whole note, marks aside
    assert "[[fever]]" in marked and "[[Fever]]" in marked
    assert "\x1b[" not in shown  # no terminal colour codes in a pipe


def test_mark_evidence_joins_overlapping_spans() -> None:
    assert mark_evidence("abcdefgh", [(5, 7), (1, 3), (2, 4)]) == "a[[bcd]]e[[fg]]h"
    assert mark_evidence("abc", []) == "abc"


def test_help_is_not_padded_when_piped() -> None:
    shown = piped("--help").stdout
    assert "evaluate" in shown and "predict" in shown
    assert not [line for line in shown.splitlines() if line != line.rstrip()]
    assert "╭" not in shown and "─" not in shown
    evaluate_help = piped("evaluate", "--help").stdout
    assert "--format" in evaluate_help


@pytest.mark.parametrize("command", [["data", "stats"], ["evaluate"], ["train"], ["predict"]])
def test_every_table_command_takes_format(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "--format" in result.output


# -- progress -------------------------------------------------------------------------------------


def test_progress_in_a_log_is_one_line_per_stage_and_epoch() -> None:
    lines: list[str] = []
    notify = LineProgress(lines.append)
    for step in range(1, 101):
        notify(ProgressEvent("lm", step, 100, {"loss": 2.0}))
    for step in range(1, 5):  # 4 of 8 planned steps: early stopping after epoch 1
        notify(ProgressEvent("attention", step, 8, {"loss": 1.5}))
    notify(ProgressEvent("attention", 4, 8, {"train_loss": 1.5, "dev_map": 0.25}, epoch=1))
    notify.close()
    notify.close()  # closing twice writes nothing more
    assert len(lines) == 5, lines
    assert lines[0] == "lm: started (100 steps planned)"
    assert lines[1].startswith("lm: done, 100 steps in ") and lines[1].endswith("; loss 2.0000")
    assert lines[2] == "attention: started (8 steps planned)"
    assert lines[3].startswith("attention: epoch 1 train_loss 1.5000  dev_map 0.2500 (")
    assert lines[4].startswith("attention: done, 4 steps in ")
    # The last epoch's values, named so, not the dev MAP of the epoch before it.
    assert lines[4].endswith("; last epoch train_loss 1.5000  dev_map 0.2500")
