from pathlib import Path

import numpy as np
import pytest

from model.neighbours import NeighbourIndex

NOTES = [
    "fiebre alta y tos productiva, neumonia basal",
    "dolor toracico opresivo, infarto agudo",
    "fiebre y tos, neumonia en base derecha",
    "dolor abdominal, apendicitis aguda",
]
CODES = [["J18.9", "R50.9"], ["I21.9"], ["J18.9"], ["K35.80"]]


def test_the_nearest_notes_share_the_query_s_words() -> None:
    index = NeighbourIndex.build(NOTES, CODES, min_notes=1)
    similarity = index.similarities("neumonia con fiebre y tos")
    assert similarity.shape == (4,)
    assert set(np.argsort(-similarity)[:2].tolist()) == {0, 2}
    assert np.all(similarity <= 1.0 + 1e-6)


def test_votes_weigh_each_neighbour_s_codes_by_similarity() -> None:
    index = NeighbourIndex.build(NOTES, CODES, min_notes=1)
    votes = index.votes("neumonia con fiebre y tos", k=2)
    assert set(votes) == {"J18.9", "R50.9"}
    assert votes["J18.9"].count == 2 and votes["J18.9"].score == pytest.approx(1.0)
    assert 0 < votes["R50.9"].score < 1


def test_a_note_without_known_words_has_no_neighbours() -> None:
    index = NeighbourIndex.build(NOTES, CODES, min_notes=1)
    assert index.votes("zzz qqq") == {}


def test_the_index_survives_its_file(tmp_path: Path) -> None:
    index = NeighbourIndex.build(NOTES, CODES, min_notes=1)
    index.save(tmp_path / "n.npz")
    loaded = NeighbourIndex.load(tmp_path / "n.npz")
    query = "dolor toracico"
    assert np.allclose(loaded.similarities(query), index.similarities(query))
    assert loaded.votes(query) == index.votes(query)
