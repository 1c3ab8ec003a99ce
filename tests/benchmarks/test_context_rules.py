"""benchmarks/context_rules.py on a hand-made CodiEsp split: it counts what the rules flag."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.conftest import run_script, table_rows

NOTES = {
    "S1": "Niega fiebre. Presenta tos productiva.",
    "S2": "Madre con asma. Posible neumonía. Se realiza ecografía.",
}
# (note, label, code, offsets): fiebre is negated, asma family, neumonía hypothetical.
X_ROWS = [
    ("S1", "DIAGNOSTICO", "r50.9", "fiebre", "6 12"),
    ("S1", "DIAGNOSTICO", "r05", "tos productiva", "23 37"),
    ("S2", "DIAGNOSTICO", "j45.909", "asma", "10 14"),
    ("S2", "DIAGNOSTICO", "j18.9", "neumonía", "24 32"),
    ("S2", "PROCEDIMIENTO", "bw40zzz", "ecografía", "45 54"),
]


def write_corpus(root: Path) -> None:
    for folder in ("text_files", "text_files_en"):
        (root / "dev" / folder).mkdir(parents=True)
        for note_id, text in NOTES.items():
            (root / "dev" / folder / f"{note_id}.txt").write_text(text, encoding="utf-8")
    codes: dict[str, list[str]] = {"D": [], "P": []}
    for note_id, label, code, _, _ in X_ROWS:
        codes["D" if label == "DIAGNOSTICO" else "P"].append(f"{note_id}\t{code}\n")
    for letter, rows in codes.items():
        (root / "dev" / f"dev{letter}.tsv").write_text("".join(rows), encoding="utf-8")
    x_lines = "".join("\t".join(row) + "\n" for row in X_ROWS)
    (root / "dev" / "devX.tsv").write_text(x_lines, encoding="utf-8")


def test_report_counts_flagged_references(tmp_path: Path) -> None:
    root = tmp_path / "codiesp"
    write_corpus(root)
    for note_id, label, _, evidence, offsets in X_ROWS:
        start, end = map(int, offsets.split())
        assert NOTES[note_id][start:end] == evidence, (label, evidence)
    out = tmp_path / "report.md"

    result = run_script(
        "context_rules.py", "--path", str(root), "--splits", "dev", "--out", str(out)
    )

    assert result.returncode == 0, result.stderr
    rows = table_rows(out.read_text(encoding="utf-8"), "split / label")
    assert rows == [
        ["dev D", "4", "1 (25.0%)", "1 (25.0%)", "1 (25.0%)", "3 (75.0%)"],
        ["dev P", "1", "0 (0.0%)", "0 (0.0%)", "0 (0.0%)", "0 (0.0%)"],
    ]
    codes = table_rows(out.read_text(encoding="utf-8"), "split / label", which=1)
    assert codes[0] == ["dev D", "4", "1 (25.0%)", "1 (25.0%)", "1 (25.0%)", "3 (75.0%)"]
    cues = dict(table_rows(out.read_text(encoding="utf-8"), "cue"))
    assert cues == {"niega": "1", "madre con": "1", "posible": "1"}
