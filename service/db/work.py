"""Database work off the event loop: each unit runs on a worker thread in its own session.

Owning the session inside the thread matters when the database hangs: the route stops waiting
after `timeout` seconds and answers 503, while the thread (and the connection it holds) is left
to fail or finish on its own; nothing else touches that session meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

from service.db.session import DatabaseTimeoutError

T = TypeVar("T")


async def run_db(
    sessions: sessionmaker[Session],
    work: Callable[[Session], T],
    *,
    timeout: float | None = None,
) -> T:
    """`work(session)` on a worker thread; DatabaseTimeoutError after `timeout` seconds."""

    def unit() -> T:
        with sessions() as session:
            return work(session)

    if timeout is None:
        return await anyio.to_thread.run_sync(unit)
    try:
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(unit, abandon_on_cancel=True)
    except TimeoutError:
        raise DatabaseTimeoutError(f"the database did not answer within {timeout:g} s") from None


@dataclass(frozen=True)
class Database:
    """The service's sessions and the longest it waits for one unit of work (a pool checkout
    plus a statement: past it the database is taken as hung and the request answers 503)."""

    sessions: sessionmaker[Session]
    timeout: float

    async def run(self, work: Callable[[Session], T]) -> T:
        return await run_db(self.sessions, work, timeout=self.timeout)
