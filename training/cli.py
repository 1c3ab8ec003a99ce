"""The training side of the `plant-icd` command: corpus statistics, baseline, PLANT training,
and (from training/cli_inference.py) evaluation and prediction. `plant_icd/cli.py` mounts these
commands; `python -m training.cli` (as torchrun runs it) is this group alone.

Heavy libraries (torch, scikit-learn) are imported inside the commands that need them, so a base
install (no torch) can evaluate and predict.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from model.tables import OutputFormat, print_tables
from training.cli_common import (
    CodesOpt,
    CorpusOpt,
    FormatOpt,
    IcdVersionOpt,
    LangOpt,
    PathOpt,
    SplitFileOpt,
    corpus_spec,
    reports_errors,
)
from training.cli_inference import evaluate, predict
from training.console import bucket_table, console, progress_bar, summary_table, training_progress

PresetOpt = Annotated[
    str,
    typer.Option(
        help="demo (under 20 minutes on 2 cores), full (longer budget; the fusion reads "
        "out-of-fold networks), paper, or tiny (tests)"
    ),
]
AttentionWeightOpt = Annotated[
    float | None,
    typer.Option(
        help="weight of the attention loss on the coders' evidence spans (default: the preset's)"
    ),
]

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
# Reading a trained model needs no torch: those commands live in training/cli_inference.py.
app.command("evaluate")(evaluate)
app.command("predict")(predict)


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
    from training.metric_report import FREQUENCY_BUCKETS, bucket_of

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


# `train --final BUNDLE`: learn from every labelled note with the train-only run's selections.
FinalOpt = Annotated[
    Path | None,
    typer.Option(
        help="Refit on train + dev with the epoch counts and thresholds that this train-only "
        "bundle (same preset and seed) selected on dev; the bundle records it",
    ),
]


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
    preset: PresetOpt = "demo",
    attention_weight: AttentionWeightOpt = None,
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
    final: FinalOpt = None,
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
        final_from=final,
        seed=seed,
        work_dir=work_dir,
        encoder_dir=encoder_dir,
        attention_weight=attention_weight,
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
    _print_training_result(result, out.name, output_format, final)


def _print_training_result(
    result: Any, name: str, output_format: OutputFormat, final: Path | None
) -> None:
    tables = [summary_table("seconds per stage", list(result.stage_seconds.items()))]
    if result.dev_report is not None:
        tables += [
            summary_table(f"{name} on dev", result.dev_report.rows()),
            bucket_table("by training frequency", result.dev_report.bucket_rows()),
        ]
    else:
        console.print(f"final refit on train + dev: its dev numbers are those of {final}")
    print_tables(tables, output_format)
    console.print(f"bundle written to {result.bundle_dir}")


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
