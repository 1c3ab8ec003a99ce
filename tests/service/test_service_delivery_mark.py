"""The delivery mark commits without waiting for the disk, and only it: on SQLite the connection
is back to FULL synchronous afterwards, so the next prediction's commit still waits for the disk;
on both backends the mark is recorded."""

from __future__ import annotations

import sqlalchemy as sa

from model.prediction import CodePrediction
from service import crud
from service.db.session import make_engine, make_session_factory


def test_the_mark_is_recorded_and_later_commits_stay_durable(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    try:
        with sessions() as session:
            before = _synchronous(session)
            (recorded,) = crud.record_predictions(
                session,
                notes=[crud.NoteRecord("fever", "n1", None, 1)],
                predictions=[[CodePrediction("R50.9", "Fever", 0.9, 1, True)]],
                model_name="m",
                model_version="1",
                elapsed_ms=1.0,
                client="ehr",
                store_note_text=False,
            )
            crud.mark_delivered(session, prediction_ids=[recorded.id])
            assert _synchronous(session) == before
        with sessions() as session:
            delivered = session.execute(
                sa.text("SELECT delivered_at FROM predictions WHERE id = :id"), {"id": recorded.id}
            ).scalar_one()
            assert delivered is not None
            assert _synchronous(session) == before
    finally:
        engine.dispose()


def _synchronous(session: sa.orm.Session) -> str:
    if session.get_bind().dialect.name == "sqlite":
        return str(session.execute(sa.text("PRAGMA synchronous")).scalar_one())
    return str(session.execute(sa.text("SHOW synchronous_commit")).scalar_one())
