"""The readiness check of the database: does it answer, and is its schema the one this code needs?

A hung database must not hang /readyz: the check gives up after `timeout` seconds and says so.
At most one check runs at a time; while an abandoned one is still stuck, later probes answer at
once from that fact instead of piling up threads and connections.
"""

from __future__ import annotations

import threading
import time

import anyio
import anyio.to_thread
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from service.db.admin import UPGRADE_COMMAND


class DatabaseProbe:
    """`heads`: the revisions this code needs; `known`: every revision this code has.

    A database at a revision this code does not know was migrated by a newer release: the
    pod stays ready through a rolling upgrade (migrations are written to be compatible with
    the release before, or the upgrade notes ask for a maintenance window). A database at an
    older revision, or with no revision at all (downgraded to base), is not one to serve from.
    """

    def __init__(
        self, engine: Engine, heads: set[str], timeout: float, known: set[str] | None = None
    ) -> None:
        self.engine = engine
        self.heads = heads
        self.known = heads if known is None else known
        self.timeout = timeout
        self._lock = threading.Lock()
        self._running_since: float | None = None

    def _check(self) -> str:
        try:
            with self.engine.connect() as connection:
                found = set(
                    connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
                )
        except SQLAlchemyError as error:
            original = getattr(error, "orig", None) or error
            return f"unavailable: {type(original).__name__}"
        finally:
            with self._lock:
                self._running_since = None
        if found and not found <= self.known:
            return "ok"  # a newer release's schema
        if found != self.heads:
            shown = ",".join(sorted(found)) or "none"
            return (
                f"schema at revision {shown}, this service needs {','.join(sorted(self.heads))}: "
                f"run `{UPGRADE_COMMAND}` or deploy the matching release"
            )
        return "ok"

    async def state(self) -> str:
        """ "ok", or why the database cannot serve ("unavailable: ...", "schema at ...")."""
        with self._lock:
            if self._running_since is not None:
                waited = time.monotonic() - self._running_since
                return f"unavailable: the previous check has not returned for {waited:.0f} s"
            self._running_since = time.monotonic()
        try:
            with anyio.fail_after(self.timeout):
                return await anyio.to_thread.run_sync(self._check, abandon_on_cancel=True)
        except TimeoutError:
            return f"unavailable: no answer within {self.timeout:g} s"
