"""The fused model as the runtime serves it: lexicon + neighbours + combiner beside the graph."""

from pathlib import Path

import numpy as np
import pytest

from model.bundle import BundleError, load_bundle
from model.fusion import FusedScorer, NoteSignals
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


@pytest.mark.parametrize("uses_network", [False, True])
def test_a_code_whose_every_match_is_negated_drops_below_the_affirmed_ones(
    tmp_path: Path, uses_network: bool
) -> None:
    """Both codes have one lexicon match and the same combiner score; the one the note rules
    out keeps a quarter of it and ranks second. A code also affirmed elsewhere keeps its score.
    The same with a combiner reading the network (scored per note once the graph is done)."""
    bundles = [
        add_fusion(build_tiny_bundle(tmp_path / name), uses_network=uses_network, **extra)
        for name, extra in (("plain", {}), ("demoting", {"negated_only_factor": 0.25}))
    ]
    plain, demoting = (OnnxPredictor(bundle, threads=2) for bundle in bundles)
    codes = list(plain.codes)
    fever, cough = codes.index("R50.9"), codes.index("R05")
    denied = "El paciente niega fiebre. Refiere tos."
    also_affirmed = "El paciente niega fiebre al ingreso. Fiebre y tos al tercer día."
    before, after = plain.scores([denied, also_affirmed]), demoting.scores([denied, also_affirmed])
    assert after[0, fever] == pytest.approx(0.25 * before[0, fever])
    assert after[0, cough] == before[0, cough] == before[0, fever]
    np.testing.assert_array_equal(after[1], before[1])
    (ranked,) = demoting.predict([denied])
    assert [p.code for p in ranked[:2]] == ["R05", "R50.9"]
    assert [h.negated for h in ranked[1].highlights if h.source == "lexicon"] == [True]


def test_a_bundle_without_the_demotion_setting_demotes_nothing(fused_dir: Path) -> None:
    """Bundles written before the setting existed serve as they did (factor 1)."""
    assert "negated_only_factor" not in (load_bundle(fused_dir).metadata.fusion or {})
    predictor = OnnxPredictor(fused_dir, threads=1)
    codes = list(predictor.codes)
    (scores,) = predictor.scores(["El paciente niega fiebre. Refiere tos."])
    assert scores[codes.index("R50.9")] == scores[codes.index("R05")]


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
