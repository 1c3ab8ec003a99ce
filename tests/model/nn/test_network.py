"""The PLANT network: encoders, label-attention decoder (branches, inattention, windows),
classifier, language model and configs, on tiny synthetic notes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from model.nn.network import (
    AWDLSTMEncoder,
    AWDLSTMLanguageModel,
    EncoderConfig,
    LabelAttentionDecoder,
    PlantClassifier,
    PlantConfig,
    build_config,
)

VOCAB = 40
CODES = 6


def tiny_config(**overrides: object) -> PlantConfig:
    values: dict[str, object] = {
        "emb_dim": 12,
        "hidden_dim": 16,
        "n_layers": 2,
        "chunk_len": 5,
        "window": 8,
        "inattention_k": 3,
        "l2r_dim": 4,
        "laat_dim": 8,
    }
    values.update(overrides)
    return build_config(vocab_size=VOCAB, n_codes=CODES, **values)


def tiny_classifier(**overrides: object) -> PlantClassifier:
    torch.manual_seed(0)
    model = PlantClassifier(tiny_config(**overrides))
    if "static" in model.config.branches:
        model.set_mutual_information(torch.rand(VOCAB, CODES))
    return model.eval()


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[Tensor, Tensor]:
    """Right-padded notes (ids 3..VOCAB-1, pad 0) of the given lengths."""
    generator = torch.Generator().manual_seed(seed)
    total = max(lengths)
    input_ids = torch.randint(3, VOCAB, (len(lengths), total), generator=generator)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
    return input_ids * attention_mask, attention_mask


# --- encoder -----------------------------------------------------------------------------


def test_chunked_encode_equals_one_full_pass() -> None:
    model = tiny_classifier()
    input_ids, attention_mask = padded_batch([23, 17, 4])
    with torch.no_grad():
        chunked = model.encoder.encode(input_ids, attention_mask)  # chunk_len 5: 5 chunks
        full, _ = model.encoder(input_ids)
    assert chunked.shape == (3, 23, 12)
    mask = attention_mask.unsqueeze(-1).bool()
    torch.testing.assert_close(chunked, full * mask, atol=1e-6, rtol=0)
    assert chunked[~mask.expand_as(chunked)].abs().max() == 0


def test_encoder_layers_are_exposed_for_staged_unfreezing() -> None:
    model = tiny_classifier(n_layers=3)
    assert isinstance(model.encoder, AWDLSTMEncoder)
    layers = list(model.encoder.layers)
    assert len(layers) == 3 and all(isinstance(layer, nn.LSTM) for layer in layers)
    # Last layer outputs emb_dim (weight tying), the others hidden_dim.
    assert [layer.hidden_size for layer in layers] == [16, 16, 12]


def test_weight_drop_only_in_training_and_keeps_plain_weights() -> None:
    torch.manual_seed(0)
    encoder = AWDLSTMEncoder(
        tiny_config(
            weight_dropout=0.5,
            embedding_dropout=0.0,
            input_dropout=0.0,
            hidden_dropout=0.0,
            output_dropout=0.0,
        ).encoder
    )
    input_ids, _ = padded_batch([9, 9])
    recurrent = encoder.layers[0].weight_hh_l0
    assert isinstance(recurrent, nn.Parameter)
    before = recurrent.detach().clone()
    encoder.train()
    first, _ = encoder(input_ids)
    second, _ = encoder(input_ids)
    assert not torch.allclose(first, second)  # a fresh DropConnect mask per forward
    first.sum().backward()
    assert recurrent.grad is not None and recurrent.grad.abs().sum() > 0
    assert torch.equal(recurrent.detach(), before)  # never edited in place
    encoder.eval()
    with torch.no_grad():
        evaluated, _ = encoder(input_ids)
        # Eval mode is a plain stack of nn.LSTMs over the embeddings.
        expected = encoder.embedding(input_ids)
        for layer in encoder.layers:
            expected, _ = layer(expected)
    torch.testing.assert_close(evaluated, expected, atol=0, rtol=0)


def test_embedding_dropout_drops_whole_words() -> None:
    torch.manual_seed(0)
    encoder = AWDLSTMEncoder(tiny_config(embedding_dropout=0.5).encoder).train()
    input_ids = torch.tensor([[5, 7, 5, 7, 5, 9, 9, 5]])
    embedded = encoder._embed(input_ids)[0]  # (T, E)
    weight = encoder.embedding.weight.detach()
    for position, token in enumerate(input_ids[0].tolist()):
        row = embedded[position].detach()
        # Each occurrence is either dropped or scaled by 1/(1-p), the same for every occurrence.
        assert torch.equal(row, torch.zeros_like(row)) or torch.allclose(row, weight[token] * 2)
        same = [p for p, t in enumerate(input_ids[0].tolist()) if t == token]
        assert all(torch.equal(embedded[p], row) for p in same)


# --- decoder: hand-computed cases ----------------------------------------------------------


def static_decoder(window: int, k: int, mi: Tensor) -> LabelAttentionDecoder:
    """Static-branch-only decoder on d=2 states with a given (V, C) MI table."""
    cfg = build_config(
        vocab_size=mi.shape[0],
        n_codes=mi.shape[1],
        branches=("static",),
        window=window,
        inattention_k=k,
    )
    decoder = LabelAttentionDecoder(cfg, d_model=2)
    decoder.set_mutual_information(mi)
    return decoder.eval()


def test_single_window_logit_is_the_attention_weighted_context() -> None:
    # Tokens 1 and 2 score 0 and ln 3 for the only code: alpha = (1/4, 3/4).
    decoder = static_decoder(window=4, k=4, mi=torch.tensor([[0.0], [0.0], [math.log(3.0)]]))
    with torch.no_grad():
        decoder.output_weight.copy_(torch.tensor([[1.0, 2.0]]))
        decoder.output_bias.fill_(0.5)
    states = torch.tensor([[[4.0, 0.0], [0.0, 8.0], [9.0, 9.0]]])  # (1, 3, 2); last is padding
    input_ids = torch.tensor([[1, 2, 0]])
    attention_mask = torch.tensor([[1, 1, 0]])
    logits, attention = decoder(states, input_ids, attention_mask)
    # context = (1/4)(4, 0) + (3/4)(0, 8) = (1, 6); logit = 1*1 + 2*6 + 0.5
    torch.testing.assert_close(logits, torch.tensor([[13.5]]))
    torch.testing.assert_close(attention, torch.tensor([[[0.25, 0.75, 0.0]]]))


def test_stateful_decoder_soft_maximum_over_windows() -> None:
    # window 2: tokens (1, 1 | 2, pad). Equal scores inside a window: uniform attention.
    decoder = static_decoder(window=2, k=2, mi=torch.zeros(3, 1))
    with torch.no_grad():
        decoder.output_weight.copy_(torch.tensor([[1.0, 0.0]]))
        decoder.output_bias.zero_()
    states = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [4.0, 0.0], [0.0, 0.0]]])
    input_ids = torch.tensor([[1, 1, 2, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 0]])
    logits, attention = decoder(states, input_ids, attention_mask)
    window_logits = torch.tensor([2.0, 4.0])  # mean(1, 3) and 4
    beta = torch.softmax(window_logits, dim=0)
    torch.testing.assert_close(logits, (beta * window_logits).sum().reshape(1, 1))
    expected = torch.stack([beta[0] / 2, beta[0] / 2, beta[1], torch.tensor(0.0)])
    torch.testing.assert_close(attention, expected.reshape(1, 1, 4))

    # A second window holding only padding is ignored: the logit is window 0's exactly.
    logits, attention = decoder(states, input_ids, torch.tensor([[1, 1, 0, 0]]))
    torch.testing.assert_close(logits, torch.tensor([[2.0]]))
    torch.testing.assert_close(attention, torch.tensor([[[0.5, 0.5, 0.0, 0.0]]]))


def test_inattention_keeps_exactly_k_even_when_every_score_ties() -> None:
    decoder = static_decoder(window=8, k=3, mi=torch.ones(VOCAB, 4))  # every token ties
    states = torch.randn(2, 20, 2)
    input_ids, attention_mask = padded_batch([20, 10])
    _, attention = decoder(states, input_ids, attention_mask)  # windows: 8 + 8 + 4 (pad to 24)
    kept = attention > 0  # (B, C, T)
    for row, length in enumerate([20, 10]):
        for start in range(0, 24, 8):
            n_valid = max(0, min(length, start + 8) - start)
            counts = kept[row, :, start : start + 8].sum(dim=-1)
            assert counts.tolist() == [min(3, n_valid)] * 4
    # Ties go to the earliest positions of each window (the ONNX TopK rule).
    one_window = static_decoder(window=8, k=3, mi=torch.ones(VOCAB, 4))
    _, attention = one_window(states[:1, :6], input_ids[:1, :6], attention_mask[:1, :6])
    expected = torch.tensor([1 / 3] * 3 + [0.0] * 3).expand(1, 4, 6)
    torch.testing.assert_close(attention, expected)


def test_inattention_keeps_all_valid_positions_of_a_short_note() -> None:
    decoder = static_decoder(window=8, k=5, mi=torch.rand(VOCAB, 3))
    input_ids, attention_mask = padded_batch([7, 2])
    _, attention = decoder(torch.randn(2, 7, 2), input_ids, attention_mask)
    assert ((attention[1] > 0).sum(dim=-1) == 2).all()  # k=5 but only 2 valid positions
    assert attention[1, :, 2:].abs().max() == 0


# --- classifier ----------------------------------------------------------------------------


@pytest.mark.parametrize("branches", [("laat", "planted", "static"), ("laat",), ("planted",)])
def test_attention_sums_to_one_over_valid_positions_and_is_zero_on_padding(
    branches: tuple[str, ...],
) -> None:
    model = tiny_classifier(branches=branches)
    input_ids, attention_mask = padded_batch([21, 13, 3])
    logits, attention = model(input_ids, attention_mask)
    assert logits.shape == (3, CODES) and logits.dtype == torch.float32
    assert attention.shape == (3, CODES, 21)
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(3, CODES))
    padding = (attention_mask == 0).unsqueeze(1).expand_as(attention)
    assert attention[padding].abs().max() == 0
    assert (attention >= 0).all()


def test_all_padding_note_gets_finite_logits_and_no_attention() -> None:
    model = tiny_classifier()
    input_ids, attention_mask = padded_batch([10, 0])
    logits, attention = model(input_ids, attention_mask)
    assert torch.isfinite(logits).all()
    assert attention[1].abs().max() == 0


def assert_padding_invariant(model: PlantClassifier, vocab: int) -> None:
    generator = torch.Generator().manual_seed(1)
    long_note = torch.randint(3, vocab, (27,), generator=generator)
    short_note = torch.randint(3, vocab, (11,), generator=generator)
    input_ids = torch.zeros(2, 27, dtype=torch.long)
    attention_mask = torch.zeros(2, 27, dtype=torch.long)
    input_ids[0, :11], attention_mask[0, :11] = short_note, 1
    input_ids[1], attention_mask[1] = long_note, 1
    with torch.no_grad():
        batch_logits, batch_attention = model(input_ids, attention_mask)
        alone_logits, alone_attention = model(short_note[None], torch.ones(1, 11, dtype=torch.long))
    torch.testing.assert_close(batch_logits[0], alone_logits[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch_attention[0, :, :11], alone_attention[0], atol=1e-5, rtol=0)
    assert batch_attention[0, :, 11:].abs().max() == 0


def test_padding_never_changes_awd_lstm_results() -> None:
    assert_padding_invariant(tiny_classifier(), VOCAB)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_padding_never_changes_transformer_results(tmp_path: Path, model_type: str) -> None:
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    # RoBERTa numbers positions from pad_token_id + 1, so it needs two more position rows.
    extra = {"pad_token_id": 1} if model_type == "roberta" else {}
    hf_config = AutoConfig.for_model(
        model_type,
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=8 + (2 if model_type == "roberta" else 0),
        **extra,
    )
    AutoModel.from_config(hf_config).save_pretrained(tmp_path / model_type)
    pad_id = 1 if model_type == "roberta" else 0
    model = tiny_classifier(
        kind="transformer", hf_path=str(tmp_path / model_type), chunk_len=8, pad_id=pad_id
    )
    assert model.encoder.out_dim == 16 and len(model.encoder.layers) == 1
    assert_padding_invariant(model, VOCAB)

    with pytest.raises(ValueError, match="chunk_len"):
        tiny_classifier(kind="transformer", hf_path=str(tmp_path / model_type), chunk_len=9)


def test_planted_branch_attends_to_the_token_its_factors_align_with() -> None:
    model = tiny_classifier(branches=("planted",), inattention_k=1)
    token_factors = torch.zeros(VOCAB, 4)
    token_factors[7, 0] = 1.0  # code 2 <-> token 7
    token_factors[11, 1] = 1.0  # code 4 <-> token 11
    code_factors = torch.zeros(CODES, 4)
    code_factors[2, 0] = 5.0
    code_factors[4, 1] = 5.0
    model.plant(token_factors, torch.zeros(VOCAB), code_factors, torch.zeros(CODES))
    input_ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 11, 10]])
    _, attention = model(input_ids, torch.ones_like(input_ids))
    # Window 0 holds positions 0-7 (token 7 at 4, token 11 at 7); window 1 holds position 8.
    assert attention[0, 2, :8].argmax().item() == 4
    assert attention[0, 4, :8].argmax().item() == 7
    torch.testing.assert_close(model.decoder.token_factors.detach(), token_factors)


def test_static_branch_is_a_buffer_and_never_trained() -> None:
    model = tiny_classifier()
    mi = torch.rand(VOCAB, CODES)
    model.set_mutual_information(mi)
    assert "decoder.mutual_information" in dict(model.named_buffers())
    assert "decoder.mutual_information" not in dict(model.named_parameters())
    assert "decoder.mutual_information" in model.state_dict()
    model.train()
    input_ids, attention_mask = padded_batch([12, 9])
    logits, _ = model(input_ids, attention_mask)
    logits.sum().backward()
    buffer = model.decoder.mutual_information
    assert isinstance(buffer, Tensor) and not buffer.requires_grad and buffer.grad is None
    torch.testing.assert_close(buffer, mi)
    with pytest.raises(ValueError, match="shape"):
        model.set_mutual_information(torch.rand(VOCAB, CODES + 1))


def test_gradients_flow_to_planted_factors() -> None:
    model = tiny_classifier().train()
    input_ids, attention_mask = padded_batch([20, 9])
    logits, _ = model(input_ids, attention_mask)
    logits.sum().backward()
    decoder = model.decoder
    assert isinstance(decoder.token_factors.grad, Tensor)
    assert isinstance(decoder.code_factors.grad, Tensor)
    assert decoder.code_factors.grad.abs().sum() > 0
    used = input_ids[attention_mask.bool()].unique()
    assert (decoder.token_factors.grad[used].abs().sum(dim=1) > 0).any()
    unused = torch.ones(VOCAB, dtype=torch.bool)
    unused[input_ids.unique()] = False
    assert decoder.token_factors.grad[unused].abs().max() == 0
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            assert torch.isfinite(parameter.grad).all(), name


def test_plant_rejects_wrong_shapes_and_missing_branch() -> None:
    model = tiny_classifier()
    with pytest.raises(ValueError, match="token_factors"):
        model.plant(
            torch.zeros(VOCAB, 5), torch.zeros(VOCAB), torch.zeros(CODES, 4), torch.zeros(6)
        )
    with pytest.raises(ValueError, match="planted"):
        tiny_classifier(branches=("laat",)).plant(
            torch.zeros(VOCAB, 4), torch.zeros(VOCAB), torch.zeros(CODES, 4), torch.zeros(CODES)
        )


# --- language model and configs ------------------------------------------------------------


def test_language_model_ties_weights_and_feeds_the_classifier_encoder() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    language_model = AWDLSTMLanguageModel(cfg.encoder)
    assert language_model.decoder.weight is language_model.encoder.embedding.weight
    input_ids, _ = padded_batch([10, 10])
    logits, hidden = language_model(input_ids)
    assert logits.shape == (2, 10, VOCAB)
    assert [h.shape for h, _ in hidden] == [(1, 2, 16), (1, 2, 12)]
    logits, _ = language_model(input_ids, hidden)  # the hidden state carries on
    classifier = PlantClassifier(cfg)
    classifier.encoder.load_state_dict(language_model.encoder.state_dict())
    assert isinstance(classifier.encoder, AWDLSTMEncoder)
    torch.testing.assert_close(
        classifier.encoder.embedding.weight, language_model.encoder.embedding.weight
    )


def test_config_round_trips_through_json() -> None:
    cfg = tiny_config(branches=("laat", "static"), top_k_export=4)
    restored = PlantConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert restored == cfg and restored.branches == ("laat", "static")
    with pytest.raises(ValueError, match="unknown"):
        PlantConfig.from_dict({**cfg.to_dict(), "colour": "red"})


def test_flat_fields_build_a_config() -> None:
    default = build_config(vocab_size=100, n_codes=7)
    assert default == PlantConfig(encoder=EncoderConfig(vocab_size=100), n_codes=7)
    shaped = build_config(vocab_size=100, n_codes=7, window=64, pad_id=2, hidden_dim=32)
    assert shaped.window == 64 and shaped.encoder.hidden_dim == 32
    assert shaped.pad_id == shaped.encoder.pad_id == 2
    with pytest.raises(ValueError, match="unknown config fields"):
        build_config(vocab_size=100, n_codes=7, heads=4)
    with pytest.raises(ValueError, match="branches"):
        build_config(vocab_size=100, n_codes=7, branches=("laat", "magic"))
