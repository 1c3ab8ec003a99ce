"""The fused model as the runtime serves it: lexicon + neighbours + combiner beside the graph."""

from pathlib import Path

import numpy as np
import pytest

from model.bundle import BundleError, load_bundle
from model.context import ContextFlags
from model.fusion import FusedScorer, NoteSignals
from model.lexicon import Match, MentionLink
from model.overlap import SessionThread
from model.runtime import PIPELINE_NOTES, OnnxPredictor
from tests.model.bundle_factory import FUSION_ONLY_CODES, add_fusion, build_tiny_bundle


@pytest.fixture(scope="module")
def fused_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_fusion(build_tiny_bundle(tmp_path_factory.mktemp("fused")))


def test_the_label_space_adds_codes_only_the_lexicon_proposes(fused_dir: Path) -> None:
    predictor = OnnxPredictor(fused_dir, threads=1)
    assert list(predictor.codes)[-1] == "K35.80"
    assert predictor.metadata.n_network_codes == len(predictor.codes) - len(FUSION_ONLY_CODES)
    scores = predictor.scores(["Paciente con apendicitis aguda y fiebre."])
    assert scores.shape == (1, len(predictor.codes))


def test_a_lexicon_match_ranks_its_code_first_with_lexicon_evidence(fused_dir: Path) -> None:
    predictor = OnnxPredictor(fused_dir, threads=1)
    text = "Paciente ingresado con apendicitis aguda."
    (ranked,) = predictor.predict([text], top_k=3)
    top = ranked[0]
    assert top.code == "K35.80" and top.above_threshold
    assert top.highlights[0].source == "lexicon"
    assert text[top.highlights[0].start : top.highlights[0].end] == "apendicitis aguda"


def test_candidates_outrank_every_other_code(fused_dir: Path) -> None:
    predictor = OnnxPredictor(fused_dir, threads=1)
    (scores,) = predictor.scores(["Fiebre y tos desde ayer."])
    codes = list(predictor.codes)
    proposed = [codes.index(code) for code in ("R50.9", "R05")]
    others = [i for i in range(len(codes)) if i not in proposed]
    assert scores[proposed].min() > scores[others].max()


def test_a_negated_match_is_marked(fused_dir: Path) -> None:
    predictor = OnnxPredictor(fused_dir, threads=1)
    (ranked,) = predictor.predict(["El paciente niega fiebre. Refiere tos."])
    by_code = {prediction.code: prediction for prediction in ranked}
    fever = [h for h in by_code["R50.9"].highlights if h.source == "lexicon"]
    cough = [h for h in by_code["R05"].highlights if h.source == "lexicon"]
    assert [h.negated for h in fever] == [True]
    assert [h.negated for h in cough] == [False]


def test_a_changed_fusion_file_fails_the_checksum(fused_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fused_dir, copy)
    lexicon = copy / "lexicon.json"
    lexicon.write_text(lexicon.read_text().replace("0.8", "0.9"))
    with pytest.raises(BundleError, match="fusion checksum mismatch"):
        load_bundle(copy)


def test_scores_and_predict_agree(fused_dir: Path) -> None:
    predictor = OnnxPredictor(fused_dir, threads=1)
    texts = ["Fiebre y tos.", "Dolor toracico con hipertension."]
    scores = predictor.scores(texts)
    for row, ranked in zip(scores, predictor.predict(texts), strict=True):
        by_code = {prediction.code: prediction.score for prediction in ranked}
        assert np.allclose([by_code[code] for code in predictor.codes], row)


def _answers(predictor: OnnxPredictor, texts: list[str]) -> tuple[np.ndarray, list[list]]:
    ranked = predictor.predict(texts, top_k=5)
    shown = [
        [(p.code, [(h.start, h.end, h.source, h.negated) for h in p.highlights]) for p in note]
        for note in ranked
    ]
    return predictor.scores(texts), shown


@pytest.mark.parametrize("uses_network", [False, True])
def test_the_session_thread_beside_the_fusion_changes_no_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uses_network: bool
) -> None:
    """On two threads a fused predictor runs the graph and the combiner on a thread of their
    own while the calling thread reads the notes' context, spans and feature rows, and codes a
    request of more notes than PIPELINE_NOTES as a pipeline of graph calls; the answers are
    those of one thread doing it all in turn. A combiner that reads the network's logit scores
    the candidates after the graph."""
    import threading

    bundle = add_fusion(build_tiny_bundle(tmp_path), uses_network=uses_network)
    texts = [
        "El paciente niega fiebre. Refiere tos.",
        "Apendicitis aguda y dolor toracico.",
        "Refiere tos y fiebre desde hace tres dias.",
        "Sin fiebre. Apendicitis aguda.",
        "Dolor toracico.",
        "Paciente con tos. Madre con apendicitis.",
    ]
    assert len(texts) > PIPELINE_NOTES
    in_turn, beside = OnnxPredictor(bundle, threads=1), OnnxPredictor(bundle, threads=2)
    assert (in_turn.graph_thread, beside.graph_thread) == (False, True)
    session_threads: set[str] = set()
    fusion_threads: set[str] = set()
    run_session, signals = SessionThread._run, FusedScorer.signals

    def recording_session(*args: object) -> object:
        session_threads.add(threading.current_thread().name)
        return run_session(*args)  # type: ignore[arg-type]

    def recording_fusion(self: FusedScorer, *args: object, **kwargs: object) -> NoteSignals:
        fusion_threads.add(threading.current_thread().name)
        return signals(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SessionThread, "_run", staticmethod(recording_session))
    monkeypatch.setattr(FusedScorer, "signals", recording_fusion)
    expected_scores, expected_shown = _answers(in_turn, texts)
    assert (session_threads, fusion_threads) == (set(), {threading.current_thread().name})
    fusion_threads.clear()
    scores, shown = _answers(beside, texts)
    assert session_threads and all(name.startswith("plant-icd-session") for name in session_threads)
    assert fusion_threads == {threading.current_thread().name}
    assert np.allclose(scores, expected_scores, atol=1e-6)
    assert [[code for code, _ in note] for note in shown] == [
        [code for code, _ in note] for note in expected_shown
    ]
    lexicon = [[[h for h in spans if h[2] == "lexicon"] for _, spans in n] for n in shown]
    assert lexicon == [
        [[h for h in spans if h[2] == "lexicon"] for _, spans in n] for n in expected_shown
    ]
    one_by_one = [beside.predict([text], top_k=5) for text in texts]
    assert [[p.code for p in note[0]] for note in one_by_one] == [
        [p.code for p in note] for note in beside.predict(texts, top_k=5)
    ]


def test_a_combiner_reading_the_network_needs_the_logits(tmp_path: Path) -> None:
    bundle = load_bundle(add_fusion(build_tiny_bundle(tmp_path), uses_network=True))
    scorer = FusedScorer(bundle)
    assert scorer.needs_logits
    signals = scorer.signals("Fiebre y tos.")
    with pytest.raises(ValueError, match="pass the note's logits"):
        scorer.candidate_scores(signals)
    logits = np.zeros(bundle.metadata.n_network_codes, dtype=np.float32)
    assert len(scorer.candidate_scores(signals, logits).probabilities) > 0


def test_the_network_alone_can_be_served_from_a_fused_bundle(fused_dir: Path) -> None:
    alone = OnnxPredictor(fused_dir, threads=1, fused=False)
    (scores,) = alone.scores(["Paciente con apendicitis aguda y fiebre."])
    assert scores.shape == (len(alone.codes),)
    assert scores[-1] == 0.0  # K35.80: only the fusion can propose it
    (ranked,) = alone.predict(["Fiebre y tos."], top_k=2)
    assert all(h.source == "attention" for code in ranked for h in code.highlights)


def test_evidence_puts_the_coders_phrases_before_heavier_mined_ngrams() -> None:
    text = "Antecedentes de interés: hipertensión arterial. Fumador."
    heading = (0, 23)  # "Antecedentes de interés": co-occurs with the code, never marked for it
    mention = (25, 46)  # "hipertensión arterial": coders marked it in training notes
    matches = [
        Match("mined", *heading, 3, (MentionLink("I10", 0.9, 20, 18),)),
        Match("evidence", *mention, 2, (MentionLink("I10", 0.6, 10, 6),)),
        Match("catalogue", *mention, 2, (MentionLink("I10", 0.3, 10, 3),)),
        Match(
            "mined", 48, 55, 1, (MentionLink("I10", 0.95, 5, 5), MentionLink("F17.210", 0.5, 5, 2))
        ),
    ]
    signals = NoteSignals(matches, [ContextFlags() for _ in matches], {})
    evidence = FusedScorer.evidence(signals, text)
    spans = [(item.start, item.end) for item in evidence["I10"]]
    assert spans == [mention, (48, 55), heading]  # coders' span first; mined by weight after
    assert evidence["I10"][0].weight == 0.6  # the best weight of that span's sources
    assert [item.text for item in evidence["F17.210"]] == ["Fumador"]
    shown = FusedScorer.evidence(signals, text, {"F17.210"})
    assert shown == {"F17.210": evidence["F17.210"]}  # only the codes asked for


def test_a_piece_of_a_coders_phrase_comes_after_every_whole_mention() -> None:
    text = "Hepatitis cronica por virus C"
    matches = [
        Match("partial", 0, 17, 2, (MentionLink("B18.2", 0.9, 10, 9),)),
        Match("mined", 18, 29, 3, (MentionLink("B18.2", 0.4, 10, 4),)),
    ]
    signals = NoteSignals(matches, [ContextFlags() for _ in matches], {})
    evidence = FusedScorer.evidence(signals, text)["B18.2"]
    # Too short to contain the coders' reference, however precise: last.
    assert [item.text for item in evidence] == ["por virus C", "Hepatitis cronica"]
