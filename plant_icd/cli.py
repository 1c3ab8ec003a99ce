"""The `plant-icd` command: one root that mounts each command group lazily from the layer that
owns it (training/cli.py, service/cli.py) and imports nothing of either until it is used.

A group whose dependencies this install lacks stays listed; running it names the extra to
install ("install plant-icd[serve] to use serve"). So a serving install (no training code, no
torch) and a training install (no web stack) share one command.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, cast

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class Mount:
    """Where a top-level command lives and what it needs to run."""

    module: str  # the module holding a Typer app
    app: str  # the Typer app's attribute in that module
    command: str  # the command (or group) of that app to mount
    extra: str | None  # the pip extra that brings its dependencies (None: the base install)
    requires: tuple[str, ...]  # top-level modules it needs, checked without importing them
    help: str  # shown in `plant-icd --help` without loading the command


_TRAINING = ("training",)
_SERVICE = ("service", "fastapi", "uvicorn", "sqlalchemy", "alembic", "pydantic_settings")
_TORCH = ("torch", "onnx", "transformers", "lightgbm")

MOUNTS: dict[str, Mount] = {
    "data": Mount(
        "training.cli", "app", "data", None, _TRAINING, "Inspect corpora (statistics per split)."
    ),
    "baseline": Mount(
        "training.cli",
        "app",
        "baseline",
        "train",
        (*_TRAINING, "sklearn", "joblib"),
        "The TF-IDF + logistic regression baseline.",
    ),
    "train": Mount(
        "training.cli",
        "app",
        "train",
        "train",
        (*_TRAINING, *_TORCH, "sklearn"),
        "Train PLANT end to end and write an ONNX model bundle.",
    ),
    "evaluate": Mount(
        "training.cli",
        "app",
        "evaluate",
        None,
        _TRAINING,
        "Metric table on a split, and ranked predictions as JSONL and CodiEsp TSV.",
    ),
    "predict": Mount(
        "training.cli",
        "app",
        "predict",
        None,
        _TRAINING,
        "Ranked codes with evidence for note files.",
    ),
    "quantize": Mount(
        "training.cli_quantize",
        "app",
        "quantize",
        "train",
        (*_TRAINING, "onnx", "onnxruntime"),
        "Write the dynamic-int8 version of a bundle, checked against fp32 dev MAP.",
    ),
    "db": Mount(
        "service.cli", "app", "db", "serve", _SERVICE, "The audit database: migrations, retention."
    ),
    "keys": Mount("service.cli", "app", "keys", "serve", _SERVICE, "API keys for the service."),
    "serve": Mount("service.cli", "app", "serve", "serve", _SERVICE, "Serve the API with uvicorn."),
}


def missing_modules(mount: Mount) -> list[str]:
    """The modules `mount` needs that this interpreter cannot find (or whose finder refuses)."""
    return [name for name in mount.requires if not _importable(name)]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def install_hint(name: str, mount: Mount, missing: list[str]) -> str:
    """E.g. "install plant-icd[serve] to use serve (this install lacks fastapi, uvicorn)"."""
    package = f"plant-icd[{mount.extra}]" if mount.extra else "plant-icd"
    return f"install {package} to use {name} (this install lacks {', '.join(missing)})"


def _unavailable(name: str, mount: Mount, missing: list[str]) -> TyperCommand:
    """A stand-in that says what to install, and exits 1, whatever it is given."""
    message = install_hint(name, mount, missing)
    stand_in = typer.Typer()

    @stand_in.command(
        name,
        help=f"{mount.help} Unavailable here: {message}.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def explain(context: typer.Context) -> None:
        del context
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)

    return cast(TyperCommand, typer.main.get_command(stand_in))


def load_command(mount: Mount) -> TyperCommand | TyperGroup:
    """The mounted command, its module imported now."""
    module = importlib.import_module(mount.module)
    loaded = typer.main.get_command(getattr(module, mount.app))
    # An app with one command is that command, not a group holding it.
    if not isinstance(loaded, TyperGroup):
        command = loaded if loaded.name == mount.command else None
    else:
        command = loaded.get_command(typer.Context(loaded), mount.command)
    if command is None:
        raise LookupError(f"{mount.module}.{mount.app} has no command {mount.command!r}")
    if not sys.stdout.isatty():
        _plain_help(command)
    return cast(TyperCommand | TyperGroup, command)


def _plain_help(command: object) -> None:
    """Click's plain help, which wraps but never pads to 80 columns (rich boxes do)."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    for child in getattr(command, "commands", {}).values():
        _plain_help(child)


class LazyGroup(TyperGroup):
    """Lists every mount; imports a mount's module only when its command is looked up."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return list(MOUNTS)

    def get_command(  # type: ignore[override]
        self, ctx: typer.Context, cmd_name: str
    ) -> TyperCommand | TyperGroup | None:
        mount = MOUNTS.get(cmd_name)
        if mount is None:
            return None
        missing = missing_modules(mount)
        if missing:
            return _unavailable(cmd_name, mount, missing)
        return load_command(mount)

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        # Plain help lists the mounts from the table, importing no group.
        rows = []
        for name, mount in MOUNTS.items():
            missing = missing_modules(mount)
            rows.append((name, mount.help + (f" [needs {', '.join(missing)}]" if missing else "")))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def build_cli() -> LazyGroup:
    """The root command; plain help when stdout is a pipe or a file."""
    return LazyGroup(
        name="plant-icd",
        help="PLANT-ICD: train, evaluate and serve ICD coding models.",
        no_args_is_help=True,
        rich_markup_mode="rich" if sys.stdout.isatty() else None,
    )


def warn_unknown_variables() -> None:
    """Name each PLANT_ICD_* variable that is set but read by nothing, and the closest known one.

    The known names are the service's settings (service/core/config.py), so an install without
    the `serve` extra cannot tell and says nothing."""
    if not any(name.startswith("PLANT_ICD_") for name in os.environ):
        return  # nothing to check: the service's settings stay unimported
    if not all(_importable(name) for name in _SERVICE):
        return
    from service.core.config import unknown_variables

    for warning in unknown_variables(os.environ):
        typer.echo(f"warning: {warning}", err=True)


def main() -> None:  # pragma: no cover - console entry point
    warn_unknown_variables()
    build_cli()()


if __name__ == "__main__":  # pragma: no cover
    main()
