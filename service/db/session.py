"""Engines and sessions: one place that knows how SQLite and PostgreSQL connections are set up.

SQLite gets WAL (readers do not block the writer), a busy timeout (concurrent writers queue
instead of failing) and foreign keys on; PostgreSQL gets a connect timeout and pre-ping, so a
database that went away fails fast and one that came back is reconnected to.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_SECONDS = 30


class DatabaseTimeoutError(Exception):
    """A unit of database work did not finish in time (a hung database or network)."""


# The database is unreachable, went away mid-statement, is locked, the pool is exhausted or the
# work timed out: the request can succeed later, so the client gets 503 with Retry-After.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    DatabaseTimeoutError,
)


def make_engine(url: str, *, connect_timeout: int = 5) -> Engine:
    """An engine for `url`; statement parameters (note text) never appear in error messages."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if parsed.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = connect_timeout
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=8,
        max_overflow=8,
        connect_args=connect_args,
        hide_parameters=True,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: a response is built from what was just written.
    return sessionmaker(engine, expire_on_commit=False)
