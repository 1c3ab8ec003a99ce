"""Migrations up and down on SQLite and PostgreSQL, the start-up refusal of an un-migrated
database, and the `db` and `keys` commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli import app as cli
from service.core.config import Settings
from service.core.security import KeyRing
from service.db import admin
from service.db.admin import DatabaseNotMigratedError
from service.db.models import Base
from service.main import create_app

TABLES = {"predictions", "predicted_codes", "feedback_events"}


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_and_downgrade(empty_database_url: str) -> None:
    url = empty_database_url
    assert admin.current(url) is None
    assert _tables(url) == set()

    admin.upgrade(url)
    assert {admin.current(url)} == admin.head_revisions()
    assert _tables(url) == TABLES
    engine = sa.create_engine(url)
    try:
        assert admin.is_up_to_date(engine)
        # The migrations create exactly what the models declare.
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        engine.dispose()

    admin.downgrade(url, "base", yes_delete_data=sorted(TABLES))
    assert admin.current(url) is None
    assert _tables(url) == set()
    admin.upgrade(url)  # and up again
    assert _tables(url) == TABLES


def test_code_thresholds_revision_keeps_earlier_rows(empty_database_url: str) -> None:
    """0002 adds predicted_codes.threshold: rows from before read NULL; downgrading drops only
    that column, as the revision declares."""
    from service.db.migrations.versions import rev_0002_code_thresholds as revision

    url = empty_database_url
    admin.upgrade(url, "0001")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO predictions (id, created_at, note_sha256, note_chars, model_name,"
                    " model_version, top_k, elapsed_ms, client) VALUES ('p-1', :now, 'x', 1, 'm',"
                    " '1', 1, 1.0, 'c')"
                ),
                {"now": "2024-01-01 00:00:00"},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO predicted_codes (prediction_id, rank, code, description, score,"
                    " above_threshold, highlights) VALUES ('p-1', 1, 'R50.9', 'Fever', 0.9, true,"
                    " '[]')"
                )
            )
        admin.upgrade(url, "0002")
        with engine.connect() as connection:
            kept = connection.execute(sa.text("SELECT code, threshold FROM predicted_codes"))
            assert [tuple(row) for row in kept] == [("R50.9", None)]
        admin.downgrade(url, "0001")
        engine.dispose()
        columns = {column["name"] for column in sa.inspect(engine).get_columns("predicted_codes")}
        assert "threshold" not in columns
        assert _tables(url) == TABLES  # no table deleted
        assert revision.DOWNGRADE_DROPS_TABLES == ()
        assert revision.DOWNGRADE_DROPS_COLUMNS == ("predicted_codes.threshold",)
    finally:
        engine.dispose()


def test_service_refuses_an_unmigrated_database(
    make_settings: Callable[..., Settings], empty_database_url: str
) -> None:
    app = create_app(make_settings(empty_database_url))
    with (
        pytest.raises(DatabaseNotMigratedError, match="Run `plant-icd db upgrade`"),
        TestClient(app),
    ):
        pass


def test_service_names_an_unreachable_database(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    with (
        pytest.raises(RuntimeError, match="cannot reach the database") as raised,
        TestClient(create_app(settings)),
    ):
        pass
    assert "secret" not in str(raised.value)


def test_db_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    behind = runner.invoke(cli, ["db", "current", "--database-url", url])
    assert behind.exit_code == 1
    assert "behind" in behind.output

    upgraded = runner.invoke(cli, ["db", "upgrade", "--database-url", url])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"revision {admin.head_revisions().pop()}" in upgraded.output
    current = runner.invoke(cli, ["db", "current", "--database-url", url])
    assert current.exit_code == 0 and "up to date" in current.output

    purged = runner.invoke(cli, ["db", "purge", "--older-than-days", "30", "--database-url", url])
    assert purged.exit_code == 0, purged.output

    down = runner.invoke(
        cli,
        ["db", "downgrade", "base", "--yes-delete-data", ",".join(TABLES), "--database-url", url],
    )
    assert down.exit_code == 0, down.output
    assert admin.current(url) is None

    refused = runner.invoke(cli, ["db", "purge", "--older-than-days", "1", "--database-url", url])
    assert refused.exit_code == 1
    assert "plant-icd db upgrade" in refused.output


def test_keys_create_prints_the_key_once_and_stores_its_hash(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["keys", "create", "--name", "ward-7", "--role", "coder", "--keys-file", str(keys_file)],
    )
    assert result.exit_code == 0, result.output
    key = next(line for line in result.output.splitlines() if line.startswith("key: "))[5:]
    entries = json.loads(keys_file.read_text())
    assert [(e["name"], e["role"]) for e in entries] == [("ward-7", "coder")]
    assert key not in keys_file.read_text()
    found = KeyRing(Settings(api_keys_file=keys_file).api_keys).authenticate(key)
    assert found is not None and found.role == "coder"
    assert keys_file.stat().st_mode & 0o077 == 0

    again = runner.invoke(
        cli, ["keys", "create", "--name", "ward-7", "--role", "ehr", "--keys-file", str(keys_file)]
    )
    assert again.exit_code == 1
    bad_role = runner.invoke(cli, ["keys", "create", "--name", "x", "--role", "nurse"])
    assert bad_role.exit_code == 1
    assert "role must be one of ehr, coder, admin" in bad_role.output


def test_db_upgrade_in_production_needs_only_the_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration job holds no API keys; production's key check is the API's business."""
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    monkeypatch.setenv("PLANT_ICD_ENVIRONMENT", "production")
    monkeypatch.setenv("PLANT_ICD_DATABASE_URL", url)
    monkeypatch.delenv("PLANT_ICD_API_KEYS", raising=False)
    monkeypatch.delenv("PLANT_ICD_API_KEYS_FILE", raising=False)
    upgraded = CliRunner().invoke(cli, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert admin.current(url) is not None


def test_every_migration_declares_what_its_downgrade_deletes(empty_database_url: str) -> None:
    """The declarations the downgrade guard relies on are present and true."""
    url = empty_database_url
    script = ScriptDirectory.from_config(admin.alembic_config(url))
    revisions = list(reversed(list(script.walk_revisions())))  # oldest first
    for migration in revisions:
        declared_tables = set(migration.module.DOWNGRADE_DROPS_TABLES)
        declared_columns = set(migration.module.DOWNGRADE_DROPS_COLUMNS)
        admin.upgrade(url, migration.revision)
        before = _columns(url)
        admin.downgrade(url, "-1", yes_delete_data=sorted(declared_tables))
        after = _columns(url)
        assert set(before) - set(after) == declared_tables, migration.revision
        lost = {
            f"{table}.{column}"
            for table in after
            for column in set(before[table]) - set(after[table])
        }
        assert lost == declared_columns, migration.revision
        admin.upgrade(url, migration.revision)


def _columns(url: str) -> dict[str, set[str]]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {
            table: {column["name"] for column in inspector.get_columns(table)}
            for table in inspector.get_table_names()
            if table != "alembic_version"
        }
    finally:
        engine.dispose()


def test_a_downgrade_that_drops_tables_must_name_them(database_url: str) -> None:
    with pytest.raises(admin.DataLossRefusedError) as refused:
        admin.downgrade(database_url, "base")
    message = str(refused.value)
    assert "--yes-delete-data feedback_events,predicted_codes,predictions" in message
    with pytest.raises(admin.DataLossRefusedError):  # naming some is not enough
        admin.downgrade(database_url, "base", yes_delete_data=["predictions"])
    assert _tables(database_url) == TABLES  # nothing was touched
    # Steps that drop only columns need no confirmation.
    admin.downgrade(database_url, "0001")
    assert admin.current(database_url) == "0001"


def test_db_downgrade_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade", "--database-url", url]).exit_code == 0
    head = admin.current(url)
    assert head is not None

    one_down = runner.invoke(cli, ["db", "downgrade", "-1", "--database-url", url])
    assert one_down.exit_code == 0, one_down.output
    assert admin.current(url) == str(int(head) - 1).zfill(4)

    refused = runner.invoke(cli, ["db", "downgrade", "base", "--database-url", url])
    assert refused.exit_code == 1
    assert "drops the tables feedback_events, predicted_codes, predictions" in refused.output
    assert _tables(url) == TABLES

    confirmed = runner.invoke(
        cli,
        [
            "db",
            "downgrade",
            "base",
            "--yes-delete-data",
            "predictions,predicted_codes,feedback_events",
            "--database-url",
            url,
        ],
    )
    assert confirmed.exit_code == 0, confirmed.output
    assert admin.current(url) is None
