"""`plant-icd quantize`: the int8 version of a trained bundle (training/quantize.py), checked
against the fp32 bundle's dev MAP on the corpus the bundle records, where it is at hand."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from model.tables import OutputFormat, print_tables
from training.cli_common import FormatOpt, UserError, reports_errors
from training.console import console, summary_table

if TYPE_CHECKING:
    from training.corpora.base import Document

app = typer.Typer(help="Quantise a bundle.", no_args_is_help=True, pretty_exceptions_enable=False)


def _dev_documents(bundle: Path, split: str, path: Path | None) -> list[Document]:
    """The notes of `split` of the corpus the bundle was trained on (bundle.json `corpus`),
    read from `path` if given; UserError saying what to pass if the corpus is not there."""
    from model.bundle import load_bundle
    from training.datasets import CorpusSpec

    corpus: dict[str, Any] = dict(load_bundle(bundle).metadata.corpus)
    recorded = corpus.get("path") or ""
    location = path if path is not None else (Path(recorded) if recorded else None)
    if location is None or not location.exists():
        raise UserError(
            f"the bundle's {corpus['name']} corpus is not at {location or recorded!r}: pass "
            "--path to it, or --no-evaluate to quantise without the dev MAP check"
        )
    fields = ("lang", "codes", "icd_version", "split_file")
    spec = CorpusSpec(
        name=corpus["name"],
        path=str(location),
        **{name: corpus[name] for name in fields if name in corpus},
    )
    return spec.load(split)


@app.command("quantize")
@reports_errors
def quantize(
    bundle: Annotated[Path, typer.Argument(help="The fp32 bundle directory")],
    out: Annotated[Path, typer.Argument(help="The int8 bundle directory to write (new)")],
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate/--no-evaluate",
            help="score the split with both precisions and keep the int8 bundle only if its "
            "MAP stays within --max-map-drop of fp32",
        ),
    ] = True,
    split: Annotated[str, typer.Option(help="Split to compare MAP on")] = "dev",
    path: Annotated[
        Path | None, typer.Option(help="Corpus location (default: the one bundle.json records)")
    ] = None,
    max_map_drop: Annotated[float, typer.Option(help="Largest MAP loss allowed")] = 0.005,
    output_format: FormatOpt = OutputFormat.auto,
) -> None:
    """Dynamic int8 (MatMul/Gemm with constant weights, LSTM) of BUNDLE's graph, written to OUT
    as a bundle marked precision int8; the runtime and /v1/model report it."""
    from training.quantize import quantize_bundle

    documents = _dev_documents(bundle, split, path) if evaluate else None
    result = quantize_bundle(bundle, out, documents, max_map_drop=max_map_drop)
    rows: list[tuple[str, object]] = [
        ("fp32 graph (MB)", round(result.fp32_bytes / 2**20, 2)),
        ("int8 graph (MB)", round(result.int8_bytes / 2**20, 2)),
    ]
    if result.map_drop is not None:
        rows += [
            (f"{split} MAP fp32", round(result.dev_map_fp32 or 0.0, 4)),
            (f"{split} MAP int8", round(result.dev_map_int8 or 0.0, 4)),
            ("MAP drop", round(result.map_drop, 4)),
        ]
    else:
        rows.append((f"{split} MAP", "not evaluated (--no-evaluate)"))
    print_tables([summary_table(f"int8 {out.name}", rows)], output_format)
    console.print(f"int8 bundle written to {out}")
