"""Normalised mutual information between token presence and code presence (training split only).

Owns the sparse document-by-token and document-by-code presence matrices, the chunked (V, C) MI
computation that scales to MIMIC-III size, and the per-code top-token ranking used by L2R.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import scipy.sparse as sp

# progress(codes_done, codes_total), called after every code chunk.
ProgressCallback = Callable[[int, int], None]


def _presence_csr(index_lists: Iterable[Iterable[int]], n_columns: int, what: str) -> sp.csr_matrix:
    """Binary (N, n_columns) float32 CSR: row n has a 1 in every column listed for document n."""
    indptr = [0]
    chunks: list[np.ndarray] = []
    for row, indices in enumerate(index_lists):
        columns = np.unique(np.asarray(indices, dtype=np.int64).ravel())
        if columns.size and (columns[0] < 0 or columns[-1] >= n_columns):
            bad = columns[0] if columns[0] < 0 else columns[-1]
            raise ValueError(
                f"document {row}: {what} index {bad} is outside [0, {n_columns}); "
                f"check that the {what} vocabulary matches the documents"
            )
        chunks.append(columns)
        indptr.append(indptr[-1] + columns.size)
    indices_all = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    return sp.csr_matrix(
        (np.ones(indices_all.size, dtype=np.float32), indices_all, np.asarray(indptr)),
        shape=(len(indptr) - 1, n_columns),
    )


def presence_matrix(token_id_lists: Iterable[Iterable[int]], n_tokens: int) -> sp.csr_matrix:
    """Binary token presence X (N, V) float32 CSR; repeated tokens in a document count once."""
    return _presence_csr(token_id_lists, n_tokens, "token")


def label_matrix(code_index_lists: Iterable[Iterable[int]], n_codes: int) -> sp.csr_matrix:
    """Binary code presence Y (N, C) float32 CSR from each document's code column indices."""
    return _presence_csr(code_index_lists, n_codes, "code")


def _binarised(matrix: sp.spmatrix) -> sp.csr_matrix:
    """Exact 0/1 float64 CSR copy (counts and explicit zeros are tolerated on input)."""
    binary = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    binary.sum_duplicates()
    binary.eliminate_zeros()
    binary.data[:] = 1.0
    return binary


def _xlogx(counts: np.ndarray) -> np.ndarray:
    """n * log(n) with 0 log 0 = 0 (max(n, 1) makes the log finite and the product exact 0)."""
    return counts * np.log(np.maximum(counts, 1.0))


def normalized_mutual_information(
    X: sp.spmatrix,
    Y: sp.spmatrix,
    code_chunk: int = 256,
    progress: ProgressCallback | None = None,
    min_df: int = 1,
) -> np.ndarray:
    """NMI(t; c) = I(t; c) / H(t, c) for binary presence of every token t and code c.

    X: (N, V) token presence, Y: (N, C) code presence (any sparse format; non-zeros mean present).
    Returns (V, C) float32 in [0, 1]. I is in nats with 0 log 0 = 0 and H(t, c) = H_t + H_c - I is
    the joint entropy; the value is 0 where H(t, c) = 0 or either variable is constant, and 0 for
    tokens with document frequency below `min_df`.

    Only the co-occurrence count n11 = (X^T Y)[t, c] needs the documents; it is a sparse product
    computed `code_chunk` codes at a time, so peak memory is a few dense (V, code_chunk) float64
    buffers plus the (V, C) float32 result, never anything of size N x V.
    """
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} documents but Y has {Y.shape[0]}")
    if code_chunk < 1:
        raise ValueError("code_chunk must be at least 1")
    n_docs, n_tokens = X.shape
    n_codes = Y.shape[1]
    result = np.zeros((n_tokens, n_codes), dtype=np.float32)
    if n_docs == 0:
        return result

    # Float64 so the counts are exact far beyond any corpus size (float32 stops at 2^24).
    tokens_by_doc = _binarised(X).T.tocsr()  # (V, N)
    codes_by_doc = _binarised(Y).tocsc()  # (N, C): column slices are cheap
    df_token = tokens_by_doc.getnnz(axis=1).astype(np.float64)  # (V,)
    df_code = codes_by_doc.getnnz(axis=0).astype(np.float64)  # (C,)

    n = float(n_docs)
    log_n = np.log(n)
    # Marginal entropies of the binary presence variables, in nats: (V,) and (C,).
    h_token = log_n - (_xlogx(df_token) + _xlogx(n - df_token)) / n
    h_code = log_n - (_xlogx(df_code) + _xlogx(n - df_code)) / n
    # A constant variable has I = 0 exactly; rounding would otherwise leave ~1e-16 there.
    token_ok = (df_token >= max(min_df, 1)) & (df_token < n)  # (V,)
    code_ok = (df_code > 0) & (df_code < n)  # (C,)

    df_t = df_token[:, None]  # (V, 1)
    for start in range(0, n_codes, code_chunk):
        stop = min(start + code_chunk, n_codes)
        df_c = df_code[None, start:stop]  # (1, b)
        n11 = (tokens_by_doc @ codes_by_doc[:, start:stop].tocsr()).toarray()  # (V, b)
        # Joint entropy H(t, c) = log N - sum_cells n log n / N over the 2x2 contingency table.
        cell_sum = _xlogx(n11)
        cell_sum += _xlogx(df_t - n11)  # n10: token without code
        cell_sum += _xlogx(df_c - n11)  # n01: code without token
        cell_sum += _xlogx(n - df_t - df_c + n11)  # n00: neither
        h_joint = log_n - cell_sum / n  # (V, b)
        del cell_sum, n11
        information = h_token[:, None] + h_code[None, start:stop] - h_joint  # (V, b)
        nmi = np.divide(information, h_joint, out=np.zeros_like(h_joint), where=h_joint > 1e-12)
        np.clip(nmi, 0.0, 1.0, out=nmi)
        nmi[~token_ok, :] = 0.0
        nmi[:, ~code_ok[start:stop]] = 0.0
        result[:, start:stop] = nmi
        if progress is not None:
            progress(stop, n_codes)
    return result


def mutual_information_from_documents(
    token_id_lists: Iterable[Iterable[int]],
    code_index_lists: Iterable[Iterable[int]],
    n_tokens: int,
    n_codes: int,
    *,
    code_chunk: int = 256,
    min_df: int = 1,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Convenience: presence matrices from tokenised training documents, then NMI (V, C)."""
    X = presence_matrix(token_id_lists, n_tokens)
    Y = label_matrix(code_index_lists, n_codes)
    return normalized_mutual_information(
        X, Y, code_chunk=code_chunk, progress=progress, min_df=min_df
    )


def top_tokens_per_code(mi: np.ndarray, m: int, code_chunk: int = 256) -> np.ndarray:
    """(C, m) int64 token indices per code, by MI descending, ties broken by lower token id.

    mi: (V, C). Every code gets exactly min(m, V) tokens, including MI-0 tokens once the positive
    ones run out (callers that care, like L2R relevance, check the MI of what they get).
    """
    n_tokens, n_codes = mi.shape
    m = min(m, n_tokens)
    top = np.zeros((n_codes, m), dtype=np.int64)
    if m <= 0:
        return top
    for start in range(0, n_codes, code_chunk):
        stop = min(start + code_chunk, n_codes)
        block = np.ascontiguousarray(mi[:, start:stop].T)  # (b, V)
        # The m-th largest value per code: fewer than m tokens lie strictly above it, and the
        # ties at it are taken in id order, so the tie-break is exact without sorting all of V.
        kth = -np.partition(-block, m - 1, axis=1)[:, m - 1]  # (b,)
        for row in range(stop - start):
            above = np.flatnonzero(block[row] > kth[row])  # ascending token ids, < m of them
            # A stable sort of ids already ascending breaks MI ties by lower id.
            above = above[np.argsort(-block[row, above], kind="stable")]
            tied = np.flatnonzero(block[row] == kth[row])[: m - above.size]
            top[start + row] = np.concatenate([above, tied])
    return top
