"""Database administration: applying and reverting migrations, checking the revision, retention.

Used by `plant-icd db ...` and by the service's start-up check, which refuses an un-migrated
database. Alembic is configured here in code, so no alembic.ini is needed at the repository root.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, update

from service.db.models import Prediction, utc_now
from service.db.session import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "plant-icd db upgrade"


class DatabaseNotMigratedError(RuntimeError):
    """The database lacks the tables this version needs; the message names the command to run."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an ini option: ini interpolation would mangle a '%' in a
    # URL-encoded password.
    config.attributes["database_url"] = url
    return config


def head_revisions() -> set[str]:
    """The revisions this code needs the database at (one, unless migrations branch)."""
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def known_revisions() -> set[str]:
    """Every revision this code's migrations define."""
    return {script.revision for script in _script().walk_revisions()}


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


class DataLossRefusedError(RuntimeError):
    """A downgrade would drop tables (and every row in them) that the caller did not name."""


@dataclass(frozen=True)
class RevertedRevision:
    """One migration a downgrade reverts, with what its downgrade deletes (as it declares)."""

    revision: str
    drops_tables: tuple[str, ...]
    drops_columns: tuple[str, ...]


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def downgrade_plan(url: str, revision: str) -> list[RevertedRevision]:
    """The migrations `downgrade(url, revision)` would revert, newest first.

    `revision` is a revision id, `base`, or `-N` (N steps down from the current revision).
    Every migration declares DOWNGRADE_DROPS_TABLES and DOWNGRADE_DROPS_COLUMNS; a missing
    declaration is an error here, so no migration can drop data unannounced.
    """
    script = _script()
    now = current(url)
    if now is None:
        return []
    if "," in now:
        raise ValueError(f"the database has several heads ({now}): downgrade each by its id")
    steps: int | None = None
    if revision.startswith("-") and revision[1:].isdigit():
        steps = int(revision[1:])
    elif revision != "base" and script.get_revision(revision) is None:
        raise ValueError(f"no revision {revision!r}: see `plant-icd db current`")
    plan: list[RevertedRevision] = []
    cursor: str | None = now
    while cursor is not None and cursor != revision and (steps is None or len(plan) < steps):
        migration = script.get_revision(cursor)
        assert migration is not None
        module = migration.module
        try:
            tables = tuple(module.DOWNGRADE_DROPS_TABLES)
            columns = tuple(module.DOWNGRADE_DROPS_COLUMNS)
        except AttributeError:
            raise ValueError(
                f"migration {cursor} does not declare DOWNGRADE_DROPS_TABLES and "
                "DOWNGRADE_DROPS_COLUMNS: add them before downgrading through it"
            ) from None
        plan.append(RevertedRevision(cursor, tables, columns))
        down = migration.down_revision
        cursor = down if isinstance(down, str) or down is None else None
    if steps is not None and len(plan) < steps:
        raise ValueError(f"cannot go {steps} revision(s) down from {now}: only {len(plan)}")
    return plan


def tables_dropped(url: str, revision: str) -> list[str]:
    """The tables (with all their rows) that downgrading to `revision` would delete."""
    return sorted({table for step in downgrade_plan(url, revision) for table in step.drops_tables})


def downgrade(url: str, revision: str, *, yes_delete_data: Iterable[str] = ()) -> None:
    """Revert to `revision`; refused (DataLossRefusedError) when that drops a table not named
    in `yes_delete_data`: the audit log is the hospital's record and is not lost by accident."""
    dropped = tables_dropped(url, revision)
    unnamed = sorted(set(dropped) - set(yes_delete_data))
    if unnamed:
        raise DataLossRefusedError(
            f"downgrading to {revision} drops the tables {', '.join(dropped)} with every row in "
            f"them (the audit log). Back up the database first; to go ahead, name them: "
            f"--yes-delete-data {','.join(dropped)}"
        )
    command.downgrade(alembic_config(url), revision)


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def current(url: str) -> str | None:
    """The database's revision ("0001"), or None before any migration."""
    engine = make_engine(url)
    try:
        revisions = current_revisions(engine)
    finally:
        engine.dispose()
    return ",".join(sorted(revisions)) or None


def is_up_to_date(engine: Engine) -> bool:
    return current_revisions(engine) == head_revisions()


def check_migrated(engine: Engine, shown_url: str) -> None:
    """Raise DatabaseNotMigratedError, naming the command, unless the database is at head."""
    revisions = current_revisions(engine)
    heads = head_revisions()
    if revisions != heads:
        found = ",".join(sorted(revisions)) or "none (never migrated)"
        head = ",".join(sorted(heads))
        raise DatabaseNotMigratedError(
            f"the database {shown_url} is at revision {found}; this service needs {head}. "
            f"Run `{UPGRADE_COMMAND}` (with the same PLANT_ICD_DATABASE_URL), then start again"
        )


def purge_note_text(engine: Engine, *, older_than: timedelta, now: datetime | None = None) -> int:
    """Null the note text of predictions older than `older_than`; returns how many were purged.

    The sha256, the codes, the highlights' offsets and all feedback stay: the audit trail
    survives, only the text goes.
    """
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    cutoff = (now or utc_now()) - older_than
    with engine.begin() as connection:
        result = connection.execute(
            update(Prediction)
            .where(Prediction.created_at < cutoff, Prediction.note_text.is_not(None))
            .values(note_text=None)
        )
    return int(result.rowcount or 0)
