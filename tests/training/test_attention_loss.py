"""The attention loss on the coders' evidence spans: targets, the loss itself, and that training
with it moves attention into the spans on a tiny synthetic corpus."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from model.nn.config import build_config
from model.nn.network import PlantClassifier
from model.tokenizer import NoteTokenizer
from training.attention_loss import (
    MASS_FLOOR,
    SpanTokens,
    span_attention_loss,
    span_token_targets,
    targets_digest,
)
from training.corpora.base import Document, EvidenceSpan
from training.datasets import CorpusSpec
from training.evaluate import gold_matrix
from training.finetune import FinetuneConfig, StageConfig, collate, run_stage


def _document(text: str, spans: list[tuple[str, int, int]]) -> Document:
    codes = tuple(dict.fromkeys(code for code, _, _ in spans))
    evidence = tuple(EvidenceSpan(code, start, end) for code, start, end in spans)
    return Document(id="n1", text=text, codes=codes, spans=evidence)


@pytest.fixture(scope="module")
def tokenizer() -> NoteTokenizer:
    texts = ["fever and cough with chest pain", "no fever reported today"] * 20
    return NoteTokenizer.train(texts, vocab_size=120)


def test_targets_are_the_tokens_inside_each_codes_spans(tokenizer: NoteTokenizer) -> None:
    text = "fever and cough with chest pain"
    document = _document(text, [("r50.9", 0, 5), ("r07.9", 21, 31), ("r50.9", 10, 15)])
    (targets,) = span_token_targets([document], tokenizer, ["r07.9", "r50.9"], max_tokens=64)
    note = tokenizer.encode_batch([text])[0]
    by_code = {item.code: item.tokens for item in targets}
    assert set(by_code) == {0, 1}
    for code, pieces in ((1, ("fever", "cough")), (0, ("chest pain",))):
        covered = "".join(text[note.offsets[t, 0] : note.offsets[t, 1]] for t in by_code[code])
        assert covered.replace(" ", "") == "".join(pieces).replace(" ", "")


def test_targets_skip_unknown_codes_and_tokens_past_the_cut(tokenizer: NoteTokenizer) -> None:
    text = "fever and cough with chest pain"
    document = _document(text, [("x99", 0, 5), ("r07.9", 21, 31)])
    (targets,) = span_token_targets([document], tokenizer, ["r07.9"], max_tokens=2)
    assert targets == []  # x99 is not in the label space; chest pain lies past 2 tokens


def test_loss_is_minus_log_of_the_mass_inside_the_spans() -> None:
    attention = torch.zeros(2, 3, 4)
    attention[0, 1] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    attention[1, 2] = torch.tensor([0.5, 0.5, 0.0, 0.0])
    targets = [
        [SpanTokens(1, np.array([2, 3]))],  # mass 0.7
        [SpanTokens(2, np.array([2])), SpanTokens(0, np.array([0, 9]))],  # 0.0 (floored); 0.0
    ]
    loss = span_attention_loss(attention, targets)
    assert loss is not None
    expected = -(math.log(0.7) + 2 * math.log(MASS_FLOOR)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert span_attention_loss(attention, [[], []]) is None


def test_targets_digest_changes_with_the_spans() -> None:
    one = [[SpanTokens(0, np.array([1, 2]))]]
    other = [[SpanTokens(0, np.array([1, 3]))]]
    assert targets_digest(one) == targets_digest([[SpanTokens(0, np.array([1, 2]))]])
    assert targets_digest(one) != targets_digest(other)


def _mass_inside(
    model: PlantClassifier, notes: list[np.ndarray], targets: list[list[SpanTokens]]
) -> float:
    model.eval()
    with torch.no_grad():
        input_ids, mask = collate(notes, np.arange(len(notes)), 256, model.config.pad_id)
        _, attention = model(input_ids, mask)
    masses = [
        float(attention[row, item.code, item.tokens].sum())
        for row, items in enumerate(targets)
        for item in items
    ]
    return float(np.mean(masses))


def test_training_with_the_loss_puts_more_attention_inside_the_spans(
    synthetic_codiesp: Path,
) -> None:
    spec = CorpusSpec("codiesp", str(synthetic_codiesp), lang="es", codes="D")
    documents = spec.load("train")
    tokenizer = NoteTokenizer.train([doc.text for doc in documents], vocab_size=300)
    codes = sorted({code for doc in documents for code in doc.codes})
    notes = [note.ids for note in tokenizer.encode_batch([doc.text for doc in documents])]
    labels = gold_matrix(documents, codes)
    targets = span_token_targets(documents, tokenizer, codes, max_tokens=256)
    assert sum(len(items) for items in targets) > len(documents)  # every note has spans
    config = build_config(
        vocab_size=tokenizer.vocab_size,
        n_codes=len(codes),
        top_k_export=len(codes),
        branches=("laat",),
        emb_dim=16,
        hidden_dim=16,
        laat_dim=16,
        inattention_k=64,
        window=64,
        pad_id=tokenizer.pad_id,
    )
    stage = StageConfig("all", "all", epochs=4, lr=1e-2)
    finetune = FinetuneConfig(stages=[stage], batch_size=8, max_tokens=256, layer_lr_decay=1.0)
    masses = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = PlantClassifier(config)
        run_stage(
            model,
            stage,
            (notes, labels),
            (notes, labels),
            replace(finetune, attention_weight=weight),
            select_on_dev=False,
            train_spans=targets,
        )
        masses[weight] = _mass_inside(model, notes, targets)
    assert masses[1.0] > masses[0.0] + 0.05, masses


def test_the_command_line_weight_replaces_the_presets() -> None:
    from training.plant import with_attention_weight
    from training.presets import preset

    demo = preset("demo")
    assert with_attention_weight(demo, None) is demo
    assert with_attention_weight(demo, 0.25).finetune.attention_weight == 0.25
    assert with_attention_weight(demo, 0.25).finetune.stages == demo.finetune.stages
    with pytest.raises(ValueError, match="0 or more"):
        with_attention_weight(demo, -1.0)
