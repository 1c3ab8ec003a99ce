"""What every training command shares: the corpus options, how a corpus spec is built from them,
and how errors a user can fix are reported (one red line, exit status 1)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from model.bundle import BundleError
from model.tables import FORMAT_HELP, OutputFormat
from training.console import console

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
