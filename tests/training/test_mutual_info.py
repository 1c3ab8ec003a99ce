"""Normalised MI on token/code presence: hand-computed tables, sklearn parity, chunking, ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import mutual_info_score, normalized_mutual_info_score

from training.mutual_info import (
    label_matrix,
    mutual_information_from_documents,
    normalized_mutual_information,
    presence_matrix,
    top_tokens_per_code,
)

# Four documents, three tokens, two codes:
#   d0: tokens {0, 1, 2}  codes {0}
#   d1: tokens {0, 2}     codes {0, 1}   (token 2 repeated: presence counts it once)
#   d2: tokens {2}        codes {1}
#   d3: tokens {2}        codes {}
TOKENS = [[0, 1, 2], [0, 2, 2], [2], [2]]
CODES = [[0], [0, 1], [1], []]


def test_presence_matrices_are_binary_csr() -> None:
    X = presence_matrix(TOKENS, 3)
    Y = label_matrix(CODES, 2)
    assert isinstance(X, sp.csr_matrix) and isinstance(Y, sp.csr_matrix)
    np.testing.assert_array_equal(X.toarray(), [[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(Y.toarray(), [[1, 0], [1, 1], [0, 1], [0, 0]])
    # n11 = docs with both: token 0 & code 0 -> d0, d1; token 0 & code 1 -> d1;
    # token 1 & code 0 -> d0; token 1 & code 1 -> none; token 2 is in every doc -> df of the code.
    np.testing.assert_array_equal((X.T @ Y).toarray(), [[2, 1], [1, 0], [2, 2]])


def test_presence_rejects_out_of_range_ids() -> None:
    with pytest.raises(ValueError, match="outside"):
        presence_matrix([[0, 5]], 3)
    with pytest.raises(ValueError, match="outside"):
        label_matrix([[-1]], 2)


def test_hand_computed_normalised_mi() -> None:
    mi = normalized_mutual_information(presence_matrix(TOKENS, 3), label_matrix(CODES, 2))
    assert mi.shape == (3, 2) and mi.dtype == np.float32

    # (token 0, code 0): n11=2 n10=0 n01=0 n00=2 -> identical variables,
    #   I = 2 * (1/2) log((1/2) / (1/2 * 1/2)) = log 2 = H_t = H_c,
    #   NMI = log2 / (2 log2 - log2) = 1.
    # (token 0, code 1): n11=1 n10=1 n01=1 n00=1 -> p_ab = 1/4 = p_a p_b everywhere, I = 0.
    # (token 1, code 0): n11=1 n10=0 n01=1 n00=2; P(t)=1/4, P(c)=1/2:
    #   I = 1/4 log(2) + 0 log 0 (= 0) + 1/4 log(2/3) + 1/2 log(4/3)
    #     = 3/2 log2 - 3/4 log3 = 0.215762
    #   H_t = log4 - 3/4 log3 = 0.562335, H_c = log2 = 0.693147,
    #   H_t + H_c - I = 3/2 log2 = 1.039721 (the joint entropy of cells 1/4, 1/4, 1/2),
    #   NMI = 0.215762 / 1.039721 = 1 - log2(3) / 2 = 0.207519.
    # (token 1, code 1): n11=0 n10=1 n01=2 n00=1: code 1 is the complement pattern of code 0 on
    #   these documents, so the same I, H_c and NMI; n11 = 0 exercises 0 log 0 = 0.
    # (token 2, *): token 2 is in every document, H_t = 0, I = 0 -> 0.
    information = 1.5 * math.log(2) - 0.75 * math.log(3)
    assert information == pytest.approx(0.215762, abs=1e-6)
    nmi_token1 = information / (1.5 * math.log(2))
    assert nmi_token1 == pytest.approx(1 - math.log2(3) / 2)
    expected = np.array([[1.0, 0.0], [nmi_token1, nmi_token1], [0.0, 0.0]])
    np.testing.assert_allclose(mi, expected, atol=1e-6)
    # The token present in every document is exactly 0, not merely close.
    assert np.all(mi[2] == 0.0)


def test_matches_sklearn_on_binary_vectors() -> None:
    rng = np.random.default_rng(3)
    presence = rng.random((40, 6)) < 0.35  # (N, V)
    labels = rng.random((40, 3)) < 0.5  # (N, C)
    mi = normalized_mutual_information(sp.csr_matrix(presence), sp.csr_matrix(labels))
    for token, code in [(0, 0), (3, 1), (5, 2), (2, 2)]:
        x, y = presence[:, token], labels[:, code]
        information = mutual_info_score(x, y)  # nats
        h_x = mutual_info_score(x, x)
        h_y = mutual_info_score(y, y)
        assert mi[token, code] == pytest.approx(information / (h_x + h_y - information), abs=1e-6)
        # sklearn's arithmetic NMI a = 2I / (H_x + H_y) relates to ours by I/(H_x+H_y-I) = a/(2-a).
        arithmetic = normalized_mutual_info_score(x, y, average_method="arithmetic")
        assert mi[token, code] == pytest.approx(arithmetic / (2 - arithmetic), abs=1e-6)


def test_chunking_gives_identical_results() -> None:
    rng = np.random.default_rng(0)
    token_lists = [rng.integers(0, 50, size=rng.integers(0, 20)) for _ in range(80)]
    code_lists = [rng.integers(0, 11, size=rng.integers(0, 4)) for _ in range(80)]
    X, Y = presence_matrix(token_lists, 50), label_matrix(code_lists, 11)
    seen: list[tuple[int, int]] = []
    whole = normalized_mutual_information(X, Y, code_chunk=1000)
    chunked = normalized_mutual_information(
        X, Y, code_chunk=3, progress=lambda done, total: seen.append((done, total))
    )
    np.testing.assert_array_equal(whole, chunked)
    np.testing.assert_array_equal(whole, normalized_mutual_information(X, Y, code_chunk=1))
    assert seen == [(3, 11), (6, 11), (9, 11), (11, 11)]
    assert whole.max() <= 1.0 and whole.min() >= 0.0 and whole.max() > 0.0


def test_counts_are_binarised_and_min_df_zeroes_rare_tokens() -> None:
    X = presence_matrix(TOKENS, 3)
    counts = X.multiply(3.0).tocsr()  # a count matrix must give the same presence-based MI
    Y = label_matrix(CODES, 2)
    np.testing.assert_array_equal(
        normalized_mutual_information(counts, Y), normalized_mutual_information(X, Y)
    )
    # Token 1 occurs in one document only: min_df=2 zeroes its row, token 0 (df 2) is kept.
    filtered = mutual_information_from_documents(TOKENS, CODES, 3, 2, min_df=2)
    assert np.all(filtered[1] == 0.0)
    assert filtered[0, 0] == pytest.approx(1.0)


def test_top_tokens_per_code_breaks_ties_by_token_id() -> None:
    mi = np.array(
        [
            [0.1, 0.0],
            [0.3, 0.0],
            [0.3, 0.2],
            [0.0, 0.0],
            [0.1, 0.2],
        ],
        dtype=np.float32,
    )  # (V=5, C=2)
    np.testing.assert_array_equal(top_tokens_per_code(mi, 3), [[1, 2, 0], [2, 4, 0]])
    np.testing.assert_array_equal(
        top_tokens_per_code(mi, 10, code_chunk=1), [[1, 2, 0, 4, 3], [2, 4, 0, 1, 3]]
    )
    assert top_tokens_per_code(mi, 2).dtype == np.int64
