"""Service commands: `db upgrade|downgrade|current|purge`, `keys create` and `serve`.

`plant_icd/cli.py` mounts them under `plant-icd` (from `app`); this module also runs alone as
`python -m service.cli`. Settings come from PLANT_ICD_* variables, as the service's.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from model.tables import FORMAT_HELP, OutputFormat, Table, print_tables
from service.core.config import (
    ROLES,
    ApiKey,
    Settings,
    normalize_database_url,
    read_api_keys_file,
)
from service.core.security import generate_key, hash_key

console = Console(stderr=True, soft_wrap=True)

db_app = typer.Typer(help="The audit database: migrations and retention.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for the service.", no_args_is_help=True)

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL (default: PLANT_ICD_DATABASE_URL, else sqlite:///./plant_icd.db)",
    ),
]


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'settings'}: {item['msg']}"
            for item in error.errors()
        )
        _fail(f"invalid settings (PLANT_ICD_* variables): {problems}")


def _database_url(database_url: str | None) -> str:
    """The URL from --database-url, else PLANT_ICD_DATABASE_URL, else the default.

    Only the URL is read, not the whole Settings: a migration job in production has no reason
    to hold the API keys that Settings insists on outside development.
    """
    url = database_url or os.environ.get("PLANT_ICD_DATABASE_URL")
    if url is None:
        default = Settings.model_fields["database_url"].default
        return normalize_database_url(str(default))
    try:
        return normalize_database_url(url)
    except ValueError as error:
        _fail(str(error))


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseUrlOption = None,
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Apply migrations (creates the tables on a new database)."""
    from service.db import admin

    url = _database_url(database_url)
    try:
        admin.upgrade(url, revision)
        now = admin.current(url)
    except Exception as error:
        _fail(f"upgrading {_shown(url)} failed: {type(error).__name__}: {error}")
    console.print(f"{_shown(url)} is at revision [bold]{now}[/bold]")


FormatOption = Annotated[OutputFormat, typer.Option("--format", help=FORMAT_HELP)]


# ignore_unknown_options: without it click reads the documented `-1` as an unknown option.
@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})
def db_downgrade(
    revision: Annotated[
        str, typer.Argument(help="target revision: an id, 'base', or '-1' (one step down)")
    ],
    database_url: DatabaseUrlOption = None,
    yes_delete_data: Annotated[
        str,
        typer.Option(
            "--yes-delete-data",
            help="comma-separated tables you accept to lose with every row in them; needed "
            "when the downgrade drops tables (the command names them)",
        ),
    ] = "",
    output_format: FormatOption = OutputFormat.auto,
) -> None:
    """Revert migrations down to REVISION. A downgrade that drops tables ('base' drops the whole
    audit log) is refused unless --yes-delete-data names every one of them."""
    from service.db import admin

    url = _database_url(database_url)
    accepted = [table.strip() for table in yes_delete_data.split(",") if table.strip()]
    try:
        plan = admin.downgrade_plan(url, revision)
        admin.downgrade(url, revision, yes_delete_data=accepted)
        now = admin.current(url)
    except admin.DataLossRefusedError as error:
        _fail(str(error))
    except Exception as error:
        _fail(f"downgrading {_shown(url)} failed: {type(error).__name__}: {error}")
    table = Table.of(
        "downgrade",
        ("reverted", "tables dropped", "columns dropped"),
        [
            (
                step.revision,
                ", ".join(step.drops_tables) or "-",
                ", ".join(step.drops_columns) or "-",
            )
            for step in plan
        ],
    )
    print_tables([table], output_format)
    console.print(f"{_shown(url)} is at revision [bold]{now or 'base (no tables)'}[/bold]")


@db_app.command("current")
def db_current(
    database_url: DatabaseUrlOption = None, output_format: FormatOption = OutputFormat.auto
) -> None:
    """Print the database's revision and whether it is up to date; exit 1 if it is not."""
    from service.db import admin

    url = _database_url(database_url)
    try:
        now = admin.current(url)
    except Exception as error:
        _fail(f"cannot read the revision of {_shown(url)}: {type(error).__name__}: {error}")
    heads = ",".join(sorted(admin.head_revisions()))
    up_to_date = now == heads
    table = Table.of(
        "audit database",
        ("database", "revision", "needed", "state"),
        [(_shown(url), now or "none", heads, "up to date" if up_to_date else "behind")],
    )
    print_tables([table], output_format)
    if not up_to_date:
        console.print(f"run `{admin.UPGRADE_COMMAND}`")
        raise typer.Exit(1)


@db_app.command("purge")
def db_purge(
    older_than_days: Annotated[
        int, typer.Option("--older-than-days", min=0, help="purge text of notes older than this")
    ],
    database_url: DatabaseUrlOption = None,
    output_format: FormatOption = OutputFormat.auto,
) -> None:
    """Delete the note text of predictions older than N days; hashes, codes and feedback stay."""
    from service.db import admin
    from service.db.session import make_engine

    url = _database_url(database_url)
    engine = make_engine(url)
    try:
        admin.check_migrated(engine, _shown(url))
        purged = admin.purge_note_text(engine, older_than=timedelta(days=older_than_days))
    except Exception as error:
        _fail(f"purging {_shown(url)} failed: {type(error).__name__}: {error}")
    finally:
        engine.dispose()
    table = Table.of(
        "retention purge", ("older than (days)", "notes purged"), [(older_than_days, purged)]
    )
    print_tables([table], output_format)


def _append_key(path: Path, entry: ApiKey) -> None:
    """Add `entry` to the keys file atomically (written beside it, then renamed), mode 0600."""
    existing = read_api_keys_file(path) if path.exists() else []
    if any(key.name == entry.name for key in existing):
        _fail(f"{path} already has a key named {entry.name!r}: choose another name")
    payload = [key.model_dump() for key in [*existing, entry]]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as tmp:
            json.dump(payload, tmp, indent=2)
            tmp.write("\n")
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="the client's name, recorded with its predictions")],
    role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")],
    keys_file: Annotated[
        Path | None,
        typer.Option("--keys-file", help="append the entry to this JSON keys file"),
    ] = None,
) -> None:
    """Create a random key. The key is printed once; only its sha256 is stored."""
    if role not in ROLES:
        _fail(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    key = generate_key()
    try:
        entry = ApiKey.model_validate({"name": name, "role": role, "sha256": hash_key(key)})
    except ValidationError as error:
        _fail(f"invalid key name {name!r}: {error.errors()[0]['msg']}")
    if keys_file is not None:
        _append_key(keys_file, entry)
        console.print(f"added {name!r} ({role}) to {keys_file}")
    else:
        console.print("append this entry to the JSON list in PLANT_ICD_API_KEYS_FILE:")
    console.print("the key (shown once; give it to the client, it cannot be recovered):")
    typer.echo(f"key: {key}")
    typer.echo(f"entry: {json.dumps(entry.model_dump())}")


def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    bundle: Annotated[
        Path | None, typer.Option(help="model bundle directory (default: PLANT_ICD_BUNDLE_DIR)")
    ] = None,
) -> None:
    """Serve the API with uvicorn (one worker; scale with more processes behind a balancer)."""
    import uvicorn

    from model.bundle import BundleError, load_bundle
    from service.db.admin import check_migrated
    from service.db.session import make_engine
    from service.main import create_app

    settings = _settings(bundle_dir=bundle)
    # The same checks the app makes at start-up, here to fail with a message, not a traceback.
    try:
        load_bundle(settings.bundle_dir)
    except BundleError as error:
        _fail(str(error))
    engine = make_engine(settings.database_url)
    try:
        check_migrated(engine, settings.redacted_database_url)
    except Exception as error:
        _fail(str(error) if isinstance(error, RuntimeError) else f"database: {error}")
    finally:
        engine.dispose()
    # The one "serving on" line (make demo prints none of its own).
    console.print(
        f"serving on http://{host}:{port} (API docs at http://{host}:{port}/docs, review page at "
        f"http://{host}:{port}/review)",
        markup=False,
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        workers=1,
        log_config=None,
        access_log=False,
    )


app = typer.Typer(help="PLANT-ICD coding service.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.command("serve")(serve)

if __name__ == "__main__":
    app()
