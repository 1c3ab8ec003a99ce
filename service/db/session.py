"""Engines and sessions: one place that knows how SQLite and PostgreSQL connections are set up.

SQLite gets WAL (readers do not block the writer), a busy timeout (concurrent writers queue
instead of failing) and foreign keys on; PostgreSQL gets a connect timeout and pre-ping, so a
database that went away fails fast and one that came back is reconnected to.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
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


def make_engine(
    url: str,
    *,
    connect_timeout: float = 5,
    statement_timeout: float | None = None,
    pool_timeout: float = 30,
) -> Engine:
    """An engine for `url`; statement parameters (note text) never appear in error messages.

    `statement_timeout` bounds one statement on the server (PostgreSQL `statement_timeout` and
    `idle_in_transaction_session_timeout`; SQLite's busy timeout, how long a writer waits for
    the lock); `pool_timeout`, the wait for a free pooled connection. A database that hangs
    without answering at all is the caller's to bound (service.db.work.run_db).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        busy = SQLITE_BUSY_TIMEOUT_SECONDS if statement_timeout is None else statement_timeout
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy},
            pool_timeout=pool_timeout,
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
    postgres = parsed.get_backend_name() == "postgresql"
    if postgres:
        connect_args["connect_timeout"] = max(1, round(connect_timeout))
        # A peer that vanished without closing (a cut network) is noticed in seconds, not in
        # the kernel's default two hours.
        connect_args.update(
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=round(1000 * max(connect_timeout, statement_timeout or 0)),
        )
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=8,
        max_overflow=8,
        pool_timeout=pool_timeout,
        connect_args=connect_args,
        hide_parameters=True,
    )
    if postgres and statement_timeout is not None:
        milliseconds = round(statement_timeout * 1000)

        # SET on each new connection rather than `options` in connect_args, which would replace
        # options the URL already carries (e.g. a search_path).
        @event.listens_for(engine, "connect")
        def _postgres_timeouts(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute(f"SET statement_timeout = {milliseconds}")
            cursor.execute(f"SET idle_in_transaction_session_timeout = {milliseconds * 2}")
            cursor.close()
            connection.commit()

    return engine


@contextmanager
def lazy_commit(session: Session) -> Iterator[None]:
    """Commit the block's writes at its end without waiting for the disk, for best-effort writes
    (a crash or power loss may lose them, never an earlier commit; the database stays consistent).

    PostgreSQL: `synchronous_commit` off for this transaction. SQLite (WAL): `synchronous` NORMAL
    on this connection for this transaction (set before it begins: SQLite refuses the change
    inside one), then back to what it was before the session lets the connection go. Every other
    write keeps waiting for the disk.
    """
    backend = session.get_bind().dialect.name
    if backend != "sqlite":
        if backend == "postgresql":
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        yield
        session.commit()
        return
    raw = session.connection().connection.dbapi_connection  # held by the session until commit
    assert raw is not None
    before = int(raw.execute("PRAGMA synchronous").fetchone()[0])
    raw.execute("PRAGMA synchronous = NORMAL")
    try:
        yield
        session.flush()
        raw.commit()  # the DB-API commit of the block's statements, while the session holds them
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.execute(f"PRAGMA synchronous = {before}")
    session.commit()  # nothing left to commit: ends the session's transaction


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: a response is built from what was just written.
    return sessionmaker(engine, expire_on_commit=False)
