from pathlib import Path

import numpy as np
import pytest

import training.fusion as fusion
from model.fusion import FEATURES, Combiner
from training.corpora.base import Document, EvidenceSpan
from training.datasets import CorpusSpec
from training.fusion import (
    FusionSettings,
    export_combiner,
    fit_combiner,
    fold_of,
    negated_only_factor,
    out_of_fold_rows,
)


def _note(index: int, codes: list[str]) -> Document:
    """A note whose evidence phrase for each code is 'signal <code>'."""
    text, spans = f"Nota {index}.", []
    for code in codes:
        phrase = f"signal {code.replace('.', '')}"
        spans.append(EvidenceSpan(code, len(text) + 1, len(text) + 1 + len(phrase)))
        text += f" {phrase}."
    return Document(id=f"n{index}", text=text, codes=tuple(codes), spans=tuple(spans))


def _corpus(n: int = 24) -> list[Document]:
    shared = ["I10", "E11.9", "J18.9"]
    return [_note(i, [shared[i % 3], shared[(i + 1) % 3]]) for i in range(n)]


def test_folds_are_balanced_and_cover_every_note() -> None:
    assignment = fold_of(23, 4, seed=1)
    assert sorted(np.bincount(assignment).tolist()) == [5, 6, 6, 6]
    assert np.array_equal(assignment, fold_of(23, 4, seed=1))


def test_no_row_is_scored_by_branches_that_saw_its_note(monkeypatch: pytest.MonkeyPatch) -> None:
    documents = _corpus()
    seen_by_builder: dict[int, set[str]] = {}
    real_build, real_score = fusion.build_features, fusion.score_rows

    def recording_build(docs, *args, **kwargs):  # type: ignore[no-untyped-def]
        builder = real_build(docs, *args, **kwargs)
        seen_by_builder[id(builder)] = {doc.id for doc in docs}
        return builder

    def checking_score(builder, docs, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert not seen_by_builder[id(builder)] & {doc.id for doc in docs}
        return real_score(builder, docs, *args, **kwargs)

    monkeypatch.setattr(fusion, "build_features", recording_build)
    monkeypatch.setattr(fusion, "score_rows", checking_score)
    rows = out_of_fold_rows(documents, FusionSettings(folds=3, catalogue=False), None)
    assert len(seen_by_builder) == 3
    assert sorted(set(rows.note_index.tolist())) == list(range(len(documents)))
    # Every gold pair is proposed: each code's phrase occurs in the other folds' notes.
    assert rows.candidate_recall == 1.0
    assert rows.labels.sum() == sum(len(doc.codes) for doc in documents)


def test_a_code_only_its_own_note_mentions_is_not_learnt_from_that_note() -> None:
    documents = [*_corpus(), _note(99, ["K35.80"])]
    rows = out_of_fold_rows(documents, FusionSettings(folds=3, catalogue=False), None)
    own = {
        code for code, note in zip(rows.codes, rows.note_index.tolist(), strict=True) if note == 24
    }
    assert "K35.80" not in own  # only note 24 says "signal K3580": no other fold can propose it
    assert rows.gold_found == rows.gold_total - 1


def test_the_exported_combiner_equals_lightgbm(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, len(FEATURES))).astype(np.float32)
    features[:, FEATURES.index("network_logit")] = np.nan  # a branch that is absent
    labels = (features[:, 0] + 0.5 * features[:, 3] > 0.2).astype(np.int8)
    rows = fusion.FusionRows(features, labels, np.repeat(np.arange(40), 10).astype(np.int32), [])
    booster = fit_combiner(rows, FusionSettings(rounds=30, min_rows_in_leaf=5))
    export_combiner(booster, tmp_path / "combiner.onnx")
    exported = Combiner(tmp_path / "combiner.onnx").margins(features)
    expected = booster.predict(features, raw_score=True)
    assert np.allclose(exported, expected, atol=1e-5)
    assert np.corrcoef(exported, labels)[0, 1] > 0.5


@pytest.mark.parametrize(("codes", "factor"), [("D", 0.4), ("P", 1.0), ("DP", 1.0)])
def test_only_diagnosis_label_spaces_demote_negated_only_codes(codes: str, factor: float) -> None:
    """A negated finding is not coded as a diagnosis, but "TAC negativo" still means the scan
    was done: procedure codes (and label spaces mixing them in) are never demoted."""
    spec = CorpusSpec("codiesp", "unused", lang="es", codes=codes)
    assert negated_only_factor(spec, FusionSettings(negated_only_factor=0.4)) == factor
