"""Scale check for training/mutual_info.py on a synthetic MIMIC-III-sized problem.

Builds ~50k documents over a 50k-token vocabulary (Zipf-distributed, ~300 distinct tokens each)
and 9k codes (Zipf, ~15 per document), then times presence matrices, NMI and top-token ranking
and reports peak RSS. Run: `python benchmarks/mi_scale.py [--docs N] [--tokens V] [--codes C]`.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from training.mutual_info import (
    label_matrix,
    normalized_mutual_information,
    presence_matrix,
    top_tokens_per_code,
)


def _peak_rss_gib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _zipf_sets(
    rng: np.random.Generator, n_docs: int, n_items: int, draws: int, target: int
) -> list[np.ndarray]:
    """Per document, up to `target` distinct items drawn from a Zipf(1) law over `n_items`."""
    weights = 1.0 / np.arange(1, n_items + 1)
    cumulative = np.cumsum(weights) / weights.sum()
    # Shuffle which ids are frequent so frequency does not follow id order.
    id_of_rank = rng.permutation(n_items)
    sets = []
    for _ in range(n_docs):
        ranks = np.searchsorted(cumulative, rng.random(draws))
        distinct = np.unique(id_of_rank[np.minimum(ranks, n_items - 1)])
        if distinct.size > target:
            # A random subset: truncating the sorted ids would favour low ids.
            distinct = np.sort(rng.choice(distinct, size=target, replace=False))
        sets.append(distinct)
    return sets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--tokens", type=int, default=50_000)
    parser.add_argument("--codes", type=int, default=9_000)
    parser.add_argument("--chunk", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    started = time.perf_counter()
    # Zipf draws repeat frequent items, so draw more than the distinct count wanted.
    token_sets = _zipf_sets(rng, args.docs, args.tokens, draws=900, target=300)
    code_sets = _zipf_sets(rng, args.docs, args.codes, draws=18, target=15)
    generated = time.perf_counter()

    X = presence_matrix(token_sets, args.tokens)
    Y = label_matrix(code_sets, args.codes)
    del token_sets, code_sets
    built = time.perf_counter()
    print(
        f"X {X.shape} nnz {X.nnz} ({X.nnz / args.docs:.0f}/doc), "
        f"Y {Y.shape} nnz {Y.nnz} ({Y.nnz / args.docs:.1f}/doc); "
        f"generate {generated - started:.1f}s, presence {built - generated:.1f}s, "
        f"peak RSS {_peak_rss_gib():.2f} GiB"
    )

    def report(done: int, total: int) -> None:
        if done == total or done % (args.chunk * 8) == 0:
            elapsed = time.perf_counter() - built
            print(f"  NMI {done}/{total} codes, {elapsed:.1f}s, peak RSS {_peak_rss_gib():.2f} GiB")

    mi = normalized_mutual_information(X, Y, code_chunk=args.chunk, progress=report)
    computed = time.perf_counter()
    top = top_tokens_per_code(mi, 31)
    ranked = time.perf_counter()
    print(
        f"NMI {mi.shape} {mi.dtype} ({mi.nbytes / 2**30:.2f} GiB) in {computed - built:.1f}s; "
        f"non-zero {np.count_nonzero(mi) / mi.size:.1%}, max {mi.max():.4f}; "
        f"top-31 per code in {ranked - computed:.1f}s ({top.shape}); "
        f"peak RSS {_peak_rss_gib():.2f} GiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
