"""PLANT on a transformers backbone: a tiny random BERT saved locally, never downloaded.

The backbone's own tokenizer is used, LM pretraining is skipped, and the exported bundle serves
through ONNX Runtime like the AWD-LSTM one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from model.runtime import OnnxPredictor
from tests.training.synthetic import FILLER, SIGNALS
from training.datasets import CorpusSpec
from training.plant import TrainOptions, run_training


def save_tiny_bert(directory: Path) -> Path:
    from transformers import BertConfig, BertModel

    texts = list(FILLER) + [signal for signals in SIGNALS.values() for signal in signals]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        texts,
        trainers.WordPieceTrainer(
            vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        ),
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    directory.mkdir(parents=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.mark.timeout(300)
def test_transformer_backbone_trains_and_serves(synthetic_codiesp: Path, tmp_path: Path) -> None:
    encoder_dir = save_tiny_bert(tmp_path / "tiny-bert")
    spec = CorpusSpec("codiesp", str(synthetic_codiesp), lang="en", codes="D")
    result = run_training(
        TrainOptions(
            spec=spec,
            out=tmp_path / "bundle",
            preset="tiny",
            work_dir=tmp_path / "work",
            encoder_dir=encoder_dir,
        )
    )
    assert result is not None
    metadata = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert metadata["config"]["encoder"]["kind"] == "transformer"
    assert metadata["config"]["encoder"]["chunk_len"] == 64  # capped by the backbone's positions
    assert "skipped" in metadata["training"]["lm"]
    note = "Pneumonia with crackles. " * 12  # longer than one 64-token chunk
    ranked = OnnxPredictor(tmp_path / "bundle").predict([note], top_k=3)[0]
    assert [prediction.rank for prediction in ranked] == [1, 2, 3]
    assert all(0 <= h.start < h.end <= len(note) for p in ranked for h in p.highlights)
