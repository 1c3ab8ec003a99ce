"""NoteTokenizer: special ids, offsets into the original text, determinism, files, batching."""

from __future__ import annotations

import subprocess
import sys
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from model.tokenizer import NoteTokenizer, TokenizedNote
from tests.corpus_location import REAL_CODIESP, missing_codiesp_reason

REPO = Path(__file__).resolve().parents[2]
CODIESP_EN = REAL_CODIESP / "train" / "text_files_en" if REAL_CODIESP else None

NOTES = [
    "Patient admitted with fever and productive cough. Chest X-ray shows pneumonia.",
    "Paciente con fiebre y tos productiva. La radiografía de tórax muestra neumonía.",
    "History of hypertension and diabetes mellitus type 2, treated with metformin 850 mg.",
    "Antecedentes de hipertensión arterial y diabetes mellitus tipo 2 en tratamiento.",
    "Abdominal pain; CT scan: acute appendicitis. Laparoscopic appendectomy performed.",
    "Dolor abdominal; TAC: apendicitis aguda. Se realiza apendicectomía laparoscópica.",
] * 5


@pytest.fixture(scope="module")
def tokenizer() -> NoteTokenizer:
    return NoteTokenizer.train(NOTES, vocab_size=400)


def _tokens(tokenizer: NoteTokenizer, note: TokenizedNote) -> list[str]:
    return [tokenizer.id_to_token(int(token_id)) for token_id in note.ids]


def _assert_offsets_valid(note: TokenizedNote, text: str) -> None:
    assert note.ids.dtype == np.int64 and note.offsets.dtype == np.int64
    assert note.offsets.shape == (len(note), 2)
    starts, ends = note.offsets[:, 0], note.offsets[:, 1]
    assert (starts >= 0).all() and (ends <= len(text)).all()
    assert (ends > starts).all()
    assert (np.diff(starts) >= 0).all() and (np.diff(ends) >= 0).all()  # monotone


def test_special_tokens_have_the_contract_ids(tokenizer: NoteTokenizer) -> None:
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.eos_id) == (0, 1, 2)
    assert [tokenizer.id_to_token(i) for i in range(3)] == ["<pad>", "<unk>", "<eos>"]
    with pytest.raises(IndexError):
        tokenizer.id_to_token(tokenizer.vocab_size + 5)


def test_vocab_size_is_an_upper_bound(tokenizer: NoteTokenizer) -> None:
    assert 100 < tokenizer.vocab_size <= 400
    small = NoteTokenizer.train(NOTES, vocab_size=150)
    assert small.vocab_size <= 150


def test_simple_words_offsets_slice_the_token(tokenizer: NoteTokenizer) -> None:
    text = "Patient with FEVER, cough and Pneumonia."
    note = tokenizer.encode(text)
    _assert_offsets_valid(note, text)
    tokens = _tokens(tokenizer, note)
    assert "<unk>" not in tokens
    for token, (start, end) in zip(tokens, note.offsets.tolist(), strict=True):
        assert text[start:end].lower() == token
    # Punctuation is its own token, never glued to a word.
    assert tokens[-1] == "." and "," in tokens


def test_offsets_point_into_the_original_text_after_normalisation(
    tokenizer: NoteTokenizer,
) -> None:
    # "ﬁ" ligature (NFKC: 1 char -> 2), upper-case accents, and a decomposed accent
    # ("e" + U+0301, NFKC: 2 chars -> 1): offsets must still cover the original characters.
    decomposed = "neumoni\u0301a"
    text = f"ﬁebre: NEUMONÍA y {decomposed}."
    note = tokenizer.encode(text)
    _assert_offsets_valid(note, text)
    tokens = _tokens(tokenizer, note)
    words = ["ﬁebre", "NEUMONÍA", decomposed]
    for word in words:
        start = text.index(word)
        end = start + len(word)
        inside = [
            token
            for token, (s, e) in zip(tokens, note.offsets.tolist(), strict=True)
            if s >= start and e <= end
        ]
        covered = note.offsets[(note.offsets[:, 0] >= start) & (note.offsets[:, 1] <= end)]
        assert "".join(inside) == unicodedata.normalize("NFKC", word).lower()
        # The word's tokens cover it exactly, accent included.
        assert covered[0, 0] == start and covered[-1, 1] == end


def test_accents_are_kept_and_rare_words_split_not_unknown(tokenizer: NoteTokenizer) -> None:
    text = "Esofagogastroduodenoscopia: gastritis crónica en niño de Curaçao."
    tokens = _tokens(tokenizer, tokenizer.encode(text))
    assert "<unk>" not in tokens  # "ç" and "ñ" unseen in training: base alphabet covers them
    assert "".join(tokens).count("ó") == 1 and "ñ" in "".join(tokens)
    pieces = tokenizer.encode("esofagogastroduodenoscopia")
    assert len(pieces) > 1  # a rare clinical word is split into subwords


def test_characters_outside_the_alphabet_become_unk(tokenizer: NoteTokenizer) -> None:
    text = "fiebre 発熱 tos"
    note = tokenizer.encode(text)
    _assert_offsets_valid(note, text)
    tokens = _tokens(tokenizer, note)
    unknown = [i for i, token in enumerate(tokens) if token == "<unk>"]
    assert unknown, tokens
    for index in unknown:
        start, end = note.offsets[index].tolist()
        assert text[start:end] in "発熱"


def test_training_is_deterministic(tmp_path: Path) -> None:
    first = NoteTokenizer.train(NOTES, vocab_size=300).save(tmp_path / "a.json")
    second = NoteTokenizer.train(NOTES, vocab_size=300).save(tmp_path / "b.json")
    assert first.read_bytes() == second.read_bytes()
    # A fresh process has fresh hash seeds: the file must still be identical.
    script = (
        "import sys; from model.tokenizer import NoteTokenizer; "
        "notes = sys.stdin.read().split('\\n'); "
        "NoteTokenizer.train(notes, vocab_size=300).save(sys.argv[1])"
    )
    third = tmp_path / "c.json"
    subprocess.run(
        [sys.executable, "-c", script, str(third)],
        input="\n".join(NOTES),
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    )
    assert third.read_bytes() == first.read_bytes()


def test_save_and_load_round_trip(tokenizer: NoteTokenizer, tmp_path: Path) -> None:
    path = tokenizer.save(tmp_path)
    assert path == tmp_path / "tokenizer.json"
    loaded = NoteTokenizer.load(tmp_path)
    text = NOTES[1]
    original, reloaded = tokenizer.encode(text), loaded.encode(text)
    np.testing.assert_array_equal(original.ids, reloaded.ids)
    np.testing.assert_array_equal(original.offsets, reloaded.offsets)
    assert loaded.vocab_size == tokenizer.vocab_size
    with pytest.raises(FileNotFoundError):
        NoteTokenizer.load(tmp_path / "missing.json")


def test_encode_batch_truncates_and_matches_encode(tokenizer: NoteTokenizer) -> None:
    texts = [NOTES[0], NOTES[3], ""]
    full = [tokenizer.encode(text) for text in texts]
    batch = tokenizer.encode_batch(texts, max_tokens=5)
    for whole, cut in zip(full, batch, strict=True):
        assert len(cut) == min(5, len(whole))
        np.testing.assert_array_equal(cut.ids, whole.ids[:5])
        np.testing.assert_array_equal(cut.offsets, whole.offsets[:5])
    assert len(batch[2]) == 0 and batch[2].offsets.shape == (0, 2)
    with pytest.raises(ValueError):
        tokenizer.encode_batch(texts, max_tokens=0)


def test_pad_batch_right_pads_with_pad_id(tokenizer: NoteTokenizer) -> None:
    short, long = tokenizer.encode("fever"), tokenizer.encode("fever and cough")
    input_ids, attention_mask = tokenizer.pad_batch([short, long])
    assert input_ids.dtype == np.int64 and attention_mask.dtype == np.int64
    assert input_ids.shape == attention_mask.shape == (2, len(long))
    np.testing.assert_array_equal(input_ids[1], long.ids)
    np.testing.assert_array_equal(input_ids[0, : len(short)], short.ids)
    assert (input_ids[0, len(short) :] == tokenizer.pad_id).all()
    assert attention_mask[0].tolist() == [1] * len(short) + [0] * (len(long) - len(short))
    # An empty batch member still yields a width-1 batch.
    empty_ids, empty_mask = tokenizer.pad_batch([tokenizer.encode("")])
    assert empty_ids.shape == (1, 1) and empty_mask.tolist() == [[0]]


def test_concurrent_encoding_matches_serial(tokenizer: NoteTokenizer) -> None:
    texts = [f"{note} {index}" for index, note in enumerate(NOTES)]
    serial = tokenizer.encode_batch(texts, max_tokens=20)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: tokenizer.encode_batch(texts, max_tokens=20), range(16)))
    for result in results:
        for expected, actual in zip(serial, result, strict=True):
            np.testing.assert_array_equal(expected.ids, actual.ids)
            np.testing.assert_array_equal(expected.offsets, actual.offsets)


@pytest.mark.corpus
@pytest.mark.skipif(CODIESP_EN is None, reason=missing_codiesp_reason())
def test_codiesp_throughput_and_offsets() -> None:
    assert CODIESP_EN is not None
    texts = [path.read_text(encoding="utf-8") for path in sorted(CODIESP_EN.glob("*.txt"))]
    tokenizer = NoteTokenizer.train(texts, vocab_size=8000)
    started = time.perf_counter()
    notes = tokenizer.encode_batch(texts)
    seconds = time.perf_counter() - started
    n_tokens = sum(len(note) for note in notes)
    print(
        f"\nencode_batch on {len(texts)} CodiEsp notes: {n_tokens / seconds:,.0f} tokens/s, "
        f"{len(texts) / seconds:,.0f} notes/s, {n_tokens / len(texts):.0f} tokens/note"
    )
    assert len(texts) / seconds > 100  # a generous floor; measured ~2,800 notes/s on 2 cores
    for text, note in zip(texts, notes, strict=True):
        _assert_offsets_valid(note, text)
    unknown = sum(int((note.ids == tokenizer.unk_id).sum()) for note in notes)
    assert unknown / n_tokens < 1e-3
