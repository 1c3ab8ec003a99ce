"""The training side of the `plant-icd` command: corpus statistics, baseline, PLANT training,
evaluation, prediction. `plant_icd/cli.py` mounts these commands; `python -m training.cli` (as
torchrun runs it) is this group alone.

Heavy libraries (torch, scikit-learn) are imported inside the commands that need them, so a base
install (no torch) can evaluate and predict.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import numpy as np
import typer

from model.bundle import BundleError
from model.tables import FORMAT_HELP, OutputFormat, Table, print_tables, resolve
from training.console import (
    bucket_table,
    console,
    progress_bar,
    stdout,
    summary_table,
    training_progress,
)

app = typer.Typer(
    name="plant-icd",
    help="PLANT-ICD: train, evaluate and predict with ICD coding models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect corpora.", no_args_is_help=True)
baseline_app = typer.Typer(help="The TF-IDF + logistic regression baseline.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(baseline_app, name="baseline")

P = ParamSpec("P")
R = TypeVar("R")


class UserError(Exception):
    """A mistake the user can fix; printed without a traceback."""


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can cause into one red line and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (UserError, OSError, ValueError, BundleError) as error:
            console.print(f"[bold red]error:[/] {error}")
            raise typer.Exit(code=1) from error

    return wrapper


CorpusOpt = Annotated[str, typer.Option(help="codiesp | mimic3 | mimic4 | jsonl")]
PathOpt = Annotated[
    Path | None,
    typer.Option(
        help="Corpus folder (or JSONL file). CodiEsp: defaults to $PLANT_ICD_CODIESP, "
        "../shared/codiesp, the download cache, else it is downloaded from Zenodo."
    ),
]
LangOpt = Annotated[str, typer.Option(help="CodiEsp text: es (original) or en (translation)")]
CodesOpt = Annotated[str, typer.Option(help="CodiEsp codes: D (ICD-10-CM), P (ICD-10-PCS), DP")]
IcdVersionOpt = Annotated[int, typer.Option(help="MIMIC-IV: ICD version 9 or 10")]
SplitFileOpt = Annotated[Path | None, typer.Option(help="MIMIC: split file of HADM_IDs")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help=FORMAT_HELP)]


def corpus_spec(
    corpus: str,
    path: Path | None,
    lang: str,
    codes: str,
    icd_version: int = 10,
    split_file: Path | None = None,
) -> Any:
    from training.corpora.codiesp import locate_codiesp
    from training.datasets import CorpusSpec

    if lang not in ("en", "es"):
        raise UserError(f"--lang must be en or es, not {lang!r}")
    if codes not in ("D", "P", "DP"):
        raise UserError(f"--codes must be D, P or DP, not {codes!r}")
    if corpus == "codiesp":
        path = locate_codiesp(path)
    elif path is None:
        raise UserError(f"--path is required for --corpus {corpus}")
    return CorpusSpec(
        name=corpus,
        path=str(path),
        lang=lang,
        codes=codes,
        icd_version=icd_version,
        split_file=str(split_file) if split_file else None,
    )


@data_app.command("stats")
@reports_errors
def data_stats(
    corpus: CorpusOpt = "codiesp",
    path: PathOpt = None,
    split: Annotated[str, typer.Option(help="train | dev | test | background")] = "train",
    lang: LangOpt = "en",
    codes: CodesOpt = "D",
    icd_version: IcdVersionOpt = 10,
    split_file: SplitFileOpt = None,
    output_format: FormatOpt = OutputFormat.auto,
) -> None:
    """Documents, words, distinct codes and codes by training-frequency bucket."""
    from training.datasets import code_counts
    from training.metrics import FREQUENCY_BUCKETS, bucket_of

    spec = corpus_spec(corpus, path, lang, codes, icd_version, split_file)
    documents = spec.load(split)
    counts = code_counts(documents)
    reference = counts if split in ("train", "background") else code_counts(spec.load("train"))
    words = [len(document.text.split()) for document in documents]
    by_bucket = dict.fromkeys(FREQUENCY_BUCKETS, 0)
    for code in counts:
        by_bucket[bucket_of(reference.get(code, 0))] += 1
    rows: list[tuple[str, object]] = [
        ("corpus", f"{spec.name} ({spec.path})"),
        ("split", split),
        ("documents", len(documents)),
        ("words", sum(words)),
        ("words per document (median)", int(np.median(words)) if words else 0),
        ("distinct codes", len(counts)),
        ("code occurrences", sum(counts.values())),
    ]
    rows += [(f"codes with train frequency {bucket}", n) for bucket, n in by_bucket.items()]
    print_tables([summary_table(f"{spec.name} {split}", rows)], output_format)


@baseline_app.command("train")
@reports_errors
def baseline_train(
    out: Annotated[Path, typer.Option(help="Output directory for the baseline model")],
    corpus: CorpusOpt = "codiesp",
    path: PathOpt = None,
    lang: LangOpt = "en",
    codes: CodesOpt = "D",
    icd_version: IcdVersionOpt = 10,
    split_file: SplitFileOpt = None,
    train_split: str = "train",
    dev_split: Annotated[str, typer.Option(help="Split for threshold tuning")] = "dev",
    c: Annotated[float, typer.Option(help="Inverse regularisation strength")] = 10.0,
    max_features: int = 50_000,
    output_format: FormatOpt = OutputFormat.auto,
) -> None:
    """Fit TF-IDF + one-vs-rest logistic regression; tune thresholds on the dev split."""
    from dataclasses import asdict, replace

    from model.metadata import BaselineMetadata
    from model.thresholds import Thresholds
    from training.baseline import BaselineConfig, TfidfBaseline
    from training.datasets import code_counts, code_entries, label_order
    from training.evaluate import evaluate_predictor, json_safe, known_gold_matrix
    from training.thresholds import tune_thresholds

    spec = corpus_spec(corpus, path, lang, codes, icd_version, split_file)
    started = time.perf_counter()
    train_documents = spec.load(train_split)
    dev_documents = spec.load(dev_split)
    code_list = label_order(train_documents)
    counts = code_counts(train_documents)
    config = BaselineConfig(c=c, max_features=max_features)
    untuned = BaselineMetadata(
        name=f"tfidf-logreg-{spec.name}-{spec.codes.lower()}-{spec.lang}",
        version=datetime.now(UTC).strftime("%Y%m%d%H%M%S"),
        created_at=datetime.now(UTC).isoformat(),
        config={"baseline": asdict(config)},
        codes=code_entries(code_list, spec.code_systems),
        code_system=spec.code_system,
        thresholds=Thresholds.uniform(len(code_list)).to_json(),
        train_code_counts=[counts[code] for code in code_list],
        corpus=spec.corpus_info(train_split, train_documents),
        training={},
    )
    with progress_bar() as progress:
        task = progress.add_task(
            "fit per-code logistic regression", total=len(code_list), status=""
        )
        model = TfidfBaseline.fit(
            [doc.text for doc in train_documents],
            [doc.codes for doc in train_documents],
            config,
            untuned,
            progress=lambda done, total: progress.update(task, completed=done),
        )
    dev_scores = model.scores([doc.text for doc in dev_documents])
    tuned = tune_thresholds(known_gold_matrix(dev_documents, code_list), dev_scores)
    model.metadata = replace(model.metadata, thresholds=tuned.to_json())
    evaluation = evaluate_predictor(model, dev_documents, scores=dev_scores)
    model.metadata = replace(
        model.metadata,
        dev_metrics=json_safe(evaluation.report.as_dict()),
        training={"seconds": round(time.perf_counter() - started, 1)},
    )
    model.save(out)
    print_tables(
        [summary_table(f"baseline on {spec.name} {dev_split}", evaluation.report.rows())],
        output_format,
    )
    console.print(f"saved to {out}")


@app.command("evaluate")
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


@app.command("train")
@reports_errors
def train(
    out: Annotated[Path, typer.Option(help="Bundle directory to write")],
    corpus: CorpusOpt = "codiesp",
    path: PathOpt = None,
    lang: LangOpt = "en",
    codes: CodesOpt = "D",
    icd_version: IcdVersionOpt = 10,
    split_file: SplitFileOpt = None,
    preset: Annotated[str, typer.Option(help="demo (minutes on a laptop) or paper")] = "demo",
    plant: Annotated[
        bool, typer.Option("--plant/--no-plant", help="--no-plant trains LANT (no planting)")
    ] = True,
    fusion: Annotated[
        bool,
        typer.Option(
            "--fusion/--no-fusion",
            help="--no-fusion serves the network alone (no lexicon, neighbours or combiner)",
        ),
    ] = True,
    evidence: Annotated[
        bool,
        typer.Option(
            "--evidence/--no-evidence",
            help="plant from the coders' evidence spans where the corpus has them (CodiEsp X); "
            "--no-evidence plants from mutual information alone",
        ),
    ] = True,
    seed: int = 13,
    work_dir: Annotated[
        Path | None, typer.Option(help="Stage cache (default runs/<corpus>-<codes>-<lang>-...)")
    ] = None,
    encoder_dir: Annotated[
        Path | None,
        typer.Option(
            help="A local Hugging Face encoder directory (config, weights, tokenizer.json) to use "
            "instead of the AWD-LSTM; no LM pretraining. Nothing is downloaded."
        ),
    ] = None,
    output_format: FormatOpt = OutputFormat.auto,
) -> None:
    """Train PLANT end to end (cached stages) and write an ONNX model bundle.

    Runs data-parallel under torchrun (`torchrun --nproc_per_node N -m training.cli train ...`):
    gloo on CPU, nccl on GPUs; rank 0 writes the stage cache and the bundle.
    """
    from training.distributed import init_distributed, shutdown
    from training.plant import TrainOptions, run_training

    ctx = init_distributed()
    spec = corpus_spec(corpus, path, lang, codes, icd_version, split_file)
    options = TrainOptions(
        spec=spec,
        out=out,
        preset=preset,
        plant=plant,
        fusion=fusion,
        evidence=evidence,
        seed=seed,
        work_dir=work_dir,
        encoder_dir=encoder_dir,
    )
    try:
        if not ctx.is_main:
            run_training(options, ctx=ctx)
            return
        console.print(f"reading {spec.name} from {spec.path} (point elsewhere with --path)")
        if ctx.enabled:
            console.print(f"data-parallel on {ctx.world_size} processes ({ctx.device.type})")
        with training_progress() as notify:
            result = run_training(options, progress=notify, ctx=ctx)
    finally:
        shutdown(ctx)
    assert result is not None  # rank 0 always gets the result
    print_tables(
        [
            summary_table("seconds per stage", list(result.stage_seconds.items())),
            summary_table(f"{out.name} on dev", result.dev_report.rows()),
            bucket_table("by training frequency", result.dev_report.bucket_rows()),
        ],
        output_format,
    )
    console.print(f"bundle written to {result.bundle_dir}")


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


@app.command("predict")
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


def plain_help_when_piped() -> None:
    """Help without boxes padded to 80 columns when stdout is a pipe or a file: click's plain
    help, which wraps but never pads."""
    if sys.stdout.isatty():
        return
    for command_group in (app, data_app, baseline_app):
        command_group.rich_markup_mode = None


if __name__ == "__main__":  # pragma: no cover - `python -m training.cli`, e.g. under torchrun
    plain_help_when_piped()
    app()
