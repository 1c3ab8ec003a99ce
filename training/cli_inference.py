"""The commands that read a trained model: `evaluate` (metric tables, ranked predictions as JSONL
and CodiEsp TSV, CodiEsp-X evidence) and `predict` (ranked codes with evidence per note file).
Neither needs torch: both read models through the runtime the service uses."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from model.tables import OutputFormat, Table, print_tables, resolve
from training.cli_common import FormatOpt, PathOpt, UserError, corpus_spec, reports_errors
from training.console import bucket_table, console, stdout, summary_table


@reports_errors
def evaluate(
    model: Annotated[Path, typer.Option(help="A model directory (PLANT bundle or baseline)")],
    split: str = "dev",
    corpus: Annotated[str | None, typer.Option(help="Default: the model's training corpus")] = None,
    path: PathOpt = None,
    lang: Annotated[str | None, typer.Option(help="Default: the model's")] = None,
    codes: Annotated[str | None, typer.Option(help="Default: the model's")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write predictions")] = None,
    evidence: Annotated[
        bool,
        typer.Option(
            "--evidence",
            help="Also score evidence spans against the CodiEsp X files (needs --lang es) and "
            "write them as CodiEsp-X TSV",
        ),
    ] = False,
    output_format: FormatOpt = OutputFormat.auto,
) -> None:
    """Metric table on a split, and ranked predictions as JSONL and CodiEsp TSV.

    With --evidence: the codes above threshold with their evidence spans as CodiEsp-X TSV, X
    precision/recall/F1 per label and combined, and evidence hit@1 for correctly predicted codes.
    """
    from model.bundle import read_model_metadata
    from training.evaluate import evaluate_predictor, json_safe, load_predictor, write_predictions

    metadata = read_model_metadata(model)
    trained_on = metadata.corpus
    spec = corpus_spec(
        corpus or trained_on.get("name", "codiesp"),
        path or (Path(trained_on["path"]) if corpus is None and "path" in trained_on else None),
        lang or trained_on.get("lang", "en"),
        codes or trained_on.get("codes", "D"),
        trained_on.get("icd_version", 10),
        Path(split_file_name) if (split_file_name := trained_on.get("split_file")) else None,
    )
    if evidence and (spec.name != "codiesp" or spec.lang != "es"):
        raise UserError(
            "--evidence scores spans against the CodiEsp X files, whose offsets point into the "
            "Spanish text: evaluate with --corpus codiesp --lang es"
        )
    documents = spec.load(split)
    predictor = load_predictor(model)
    started = time.perf_counter()
    evaluation = evaluate_predictor(predictor, documents)
    seconds = time.perf_counter() - started
    out_dir = out or model / f"eval-{spec.name}-{split}"
    jsonl_path, tsv_path = write_predictions(
        evaluation, out_dir, lower_case_tsv=spec.name == "codiesp"
    )
    (out_dir / "metrics.json").write_text(
        json.dumps(json_safe(evaluation.report.as_dict()), indent=2)
    )
    console.print(
        f"{len(documents)} notes in {seconds:.1f} s; predictions: {jsonl_path}, {tsv_path}"
    )
    title = f"{metadata.name} on {spec.name} {split}"
    tables = [
        summary_table(title, evaluation.report.rows()),
        bucket_table("by training frequency", evaluation.report.bucket_rows()),
    ]
    if evidence:
        tables.append(_evaluate_evidence(predictor, documents, spec, split, out_dir))
    print_tables(tables, output_format)


# Printed column -> evidence.json key; short, so the table fits an 80-column terminal.
_EVIDENCE_COLUMNS = (
    ("P", "precision"),
    ("R", "recall"),
    ("F1", "f1"),
    ("pred", "predicted"),
    ("gold", "gold"),
    ("found", "found"),
    ("correct", "correct_codes"),
    ("hit@1", "hit_at_1_rule"),
    ("overlap@1", "hit_at_1_overlap"),
)


def _evaluate_evidence(
    predictor: Any, documents: list[Any], spec: Any, split: str, out_dir: Path
) -> Table:
    """CodiEsp-X: write the evidence of the codes above threshold, score it; its table."""
    from training.corpora.codiesp import read_codiesp_references
    from training.evidence import (
        evidence_report,
        hit_at_one,
        predicted_evidence,
        write_x_tsv,
        x_scores,
    )

    predictions = predictor.predict([document.text for document in documents])
    label = spec.codes if spec.codes in ("D", "P") else None
    predicted = predicted_evidence([document.id for document in documents], predictions, label)
    references = read_codiesp_references(Path(spec.path), split, codes=spec.codes)
    report = evidence_report(x_scores(predicted, references), hit_at_one(predicted, references))
    x_path = out_dir / "predictions_x.tsv"
    rows = write_x_tsv(predicted, x_path)
    (out_dir / "evidence.json").write_text(json.dumps(report, indent=2))
    without = sum(1 for item in predicted if not item.spans)
    console.print(
        f"{len(predicted)} codes above threshold, {without} without an evidence span; "
        f"{rows} spans written to {x_path}"
    )
    return bucket_table(
        f"CodiEsp-X evidence on {split} (span within 10 characters of the coders')",
        [
            (name, {short: values[key] for short, key in _EVIDENCE_COLUMNS})
            for name, values in report.items()
        ],
        first_column="label",
    )


def mark_evidence(text: str, spans: list[tuple[int, int]]) -> str:
    """The text with each evidence span in `[[...]]`; overlapping or touching spans are joined,
    so the marks never nest. Offsets count code points, as Python strings do."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, position = [], 0
    for start, end in merged:
        pieces += [text[position:start], "[[", text[start:end], "]]"]
        position = end
    return "".join([*pieces, text[position:]])


def _code_json(prediction: Any, threshold: float) -> dict[str, Any]:
    """A ranked code as the API's `codes` items show it."""
    return {
        "code": prediction.code,
        "description": prediction.description,
        "score": prediction.score,
        "rank": prediction.rank,
        "above_threshold": prediction.above_threshold,
        "threshold": threshold,
        "highlights": [
            {"start": h.start, "end": h.end, "text": h.text, "weight": h.weight}
            for h in prediction.highlights
        ],
    }


@reports_errors
def predict(
    bundle: Annotated[Path, typer.Option(help="A PLANT bundle directory")],
    notes: Annotated[list[Path], typer.Argument(help="Note text files")],
    top_k: Annotated[int, typer.Option(help="Codes to show per note")] = 10,
    output_format: FormatOpt = OutputFormat.auto,
) -> None:
    """Ranked codes with evidence for each note file: a table and the note with the best code's
    evidence marked (highlighted at a terminal, in [[...]] otherwise), or JSON shaped as the
    API's predictions (--format json)."""
    from rich.text import Text

    from model.runtime import OnnxPredictor

    predictor = OnnxPredictor(bundle)
    thresholds = dict(zip(predictor.codes, predictor.thresholds.tolist(), strict=True))
    texts = [note.read_text(encoding="utf-8") for note in notes]
    results = predictor.predict(texts, top_k=top_k)
    chosen = resolve(output_format)
    if chosen is OutputFormat.json:
        document = {
            "model": {"name": predictor.name, "version": predictor.version},
            "predictions": [
                {"note": str(note), "codes": [_code_json(p, thresholds[p.code]) for p in ranked]}
                for note, ranked in zip(notes, results, strict=True)
            ],
        }
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return
    for note, text, ranked in zip(notes, texts, results, strict=True):
        rows = [
            (
                p.rank,
                p.code,
                round(p.score, 4),
                round(thresholds[p.code], 4),
                "yes" if p.above_threshold else "no",
                p.description or "(no description)",
                "; ".join(f"{h.text!r} ({h.weight:.2f})" for h in p.highlights[:3]),
            )
            for p in ranked
        ]
        columns = ("rank", "code", "score", "threshold", "above", "description", "evidence")
        print_tables([Table.of(str(note), columns, rows)], chosen)
        if not ranked:
            continue
        best = ranked[0]
        spans = [(h.start, h.end) for h in best.highlights]
        if chosen is OutputFormat.table:
            stdout.print(f"evidence for {best.code}:", markup=False)
            marked = Text(text)
            for start, end in spans:
                marked.stylize("bold black on yellow", start, end)
            stdout.print(marked)
        else:
            sys.stdout.write(f"\nevidence for {best.code} in [[...]]:\n\n")
            sys.stdout.write(mark_evidence(text, spans) + "\n\n")
