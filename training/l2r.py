"""Learning to rank tokens per code (the "L" of PLANT): model, MI-derived relevance, LambdaRank.

Owns `L2RModel` (score(t, c) = u_t . v_c + b_t + b_c), graded relevance from per-code MI ranks,
the LambdaRank loss with its explicit reference gradients, NDCG@k, and the seeded training loop
with a held-out NDCG report. Its factors are what `PlantClassifier.plant` receives.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.mutual_info import top_tokens_per_code
from training.progress import Notify, ProgressEvent


class L2RModel(nn.Module):
    """Factorised token-for-code relevance: score(t, c) = u_t . v_c + b_t + b_c."""

    def __init__(
        self,
        n_tokens: int,
        n_codes: int,
        dim: int,
        init_std: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_tokens = n_tokens
        self.n_codes = n_codes
        self.dim = dim
        self.token_factors = nn.Parameter(torch.empty(n_tokens, dim))  # (V, f)
        self.token_bias = nn.Parameter(torch.zeros(n_tokens))  # (V,)
        self.code_factors = nn.Parameter(torch.empty(n_codes, dim))  # (C, f)
        self.code_bias = nn.Parameter(torch.zeros(n_codes))  # (C,)
        nn.init.normal_(self.token_factors, std=init_std, generator=generator)
        nn.init.normal_(self.code_factors, std=init_std, generator=generator)

    def score(self, token_ids: torch.Tensor, code_ids: torch.Tensor) -> torch.Tensor:
        """token_ids (C_b, L) int64, code_ids (C_b,) int64 -> scores (C_b, L)."""
        tokens = self.token_factors[token_ids]  # (C_b, L, f)
        codes = self.code_factors[code_ids]  # (C_b, f)
        interaction = torch.einsum("blf,bf->bl", tokens, codes)  # (C_b, L)
        return interaction + self.token_bias[token_ids] + self.code_bias[code_ids][:, None]

    def forward(self, token_ids: torch.Tensor, code_ids: torch.Tensor) -> torch.Tensor:
        return self.score(token_ids, code_ids)


# ---------------------------------------------------------------------------------------------
# Relevance from MI ranks


def relevance_from_rank(rank: np.ndarray | int, n_grades: int) -> np.ndarray:
    """Graded relevance of a 1-based MI rank: max(0, n_grades - floor(log2(rank))).

    Rank 1 gets `n_grades`, ranks 2-3 get n_grades - 1, 4-7 get n_grades - 2, ..., and every rank
    from 2^n_grades on gets 0: a log scale, because the MI of the best few tokens per code is far
    more informative than fine differences deep in the tail. Tokens with MI 0 must be given grade
    0 by the caller whatever their rank (see `graded_tokens_per_code`).
    """
    ranks = np.asarray(rank, dtype=np.int64)
    if np.any(ranks < 1):
        raise ValueError("ranks are 1-based")
    # frexp(r) = (mantissa in [0.5, 1), e) with r = mantissa * 2^e, so floor(log2 r) = e - 1
    # exactly, without the rounding of a float log2.
    _, exponent = np.frexp(ranks.astype(np.float64))
    return np.maximum(0, n_grades - (exponent.astype(np.int64) - 1))


def graded_tokens_per_code(mi: np.ndarray, n_grades: int) -> tuple[np.ndarray, np.ndarray]:
    """The tokens with a non-zero grade per code: (tokens (C, m) int64, grades (C, m) int64).

    mi: (V, C). m = 2^n_grades - 1 (the last rank with a positive grade), capped at V. Tokens are
    in MI rank order (ties by lower token id); slots whose MI is 0 have grade 0.
    """
    m = 2**n_grades - 1
    tokens = top_tokens_per_code(mi, m)  # (C, m)
    ranks = np.arange(1, tokens.shape[1] + 1)
    grades = np.broadcast_to(relevance_from_rank(ranks, n_grades), tokens.shape).copy()  # (C, m)
    token_mi = np.take_along_axis(mi.T, tokens, axis=1)  # (C, m)
    grades[token_mi <= 0] = 0
    return tokens, grades


# ---------------------------------------------------------------------------------------------
# NDCG and LambdaRank


def _discounts(positions: np.ndarray, k: int) -> np.ndarray:
    """1 / log2(1 + position) for 1-based positions within the cut-off k, else 0."""
    return np.where(positions <= k, 1.0 / np.log2(1.0 + positions), 0.0)


def ndcg_at_k(
    scores: np.ndarray, relevance: np.ndarray, k: int = 15, mask: np.ndarray | None = None
) -> np.ndarray:
    """NDCG@k per list: (B, L) scores and grades -> (B,) float64, NaN where the ideal DCG is 0.

    Gain 2^rel - 1, discount 1/log2(1 + position). Ties in score keep list order. Items where
    `mask` is False are padding: ranked after every real item with gain 0, so they change nothing.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
        relevance = np.where(mask, relevance, 0.0)
    gains = np.exp2(relevance) - 1.0  # (B, L)
    order = np.argsort(-scores, axis=1, kind="stable")  # (B, L)
    discount = _discounts(np.arange(1, scores.shape[1] + 1), k)  # (L,)
    dcg = (np.take_along_axis(gains, order, axis=1) * discount).sum(axis=1)  # (B,)
    ideal = (-np.sort(-gains, axis=1) * discount).sum(axis=1)  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, dcg / ideal, np.nan)


def lambda_gradients(
    scores: np.ndarray, relevance: np.ndarray, k: int = 15, sigma: float = 1.0
) -> np.ndarray:
    """Reference LambdaRank lambdas, written as explicit loops: (B, L) -> (B, L) float64.

    For each pair with rel_i > rel_j: lambda_ij = -sigma / (1 + exp(sigma (s_i - s_j))) * |dNDCG|,
    where |dNDCG| is the NDCG@k change from swapping i and j in the current ranking by score;
    item i accumulates +lambda_ij and item j -lambda_ij. The gradient of `lambdarank_loss` equals
    these lambdas divided by the number of lists B.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    n_lists, list_len = scores.shape
    lambdas = np.zeros_like(scores)
    for b in range(n_lists):
        order = np.argsort(-scores[b], kind="stable")
        positions = np.empty(list_len, dtype=np.int64)
        positions[order] = np.arange(1, list_len + 1)
        gains = np.exp2(relevance[b]) - 1.0
        discount = _discounts(positions, k)
        ideal = float((np.sort(gains)[::-1] * _discounts(np.arange(1, list_len + 1), k)).sum())
        if ideal <= 0:
            continue
        for i in range(list_len):
            for j in range(list_len):
                if relevance[b, i] <= relevance[b, j]:
                    continue
                delta = abs((gains[i] - gains[j]) * (discount[i] - discount[j])) / ideal
                rho = 1.0 / (1.0 + math.exp(sigma * (scores[b, i] - scores[b, j])))
                lambda_ij = -sigma * rho * delta
                lambdas[b, i] += lambda_ij
                lambdas[b, j] -= lambda_ij
    return lambdas


def _pair_weights(
    scores: torch.Tensor, relevance: torch.Tensor, k: int, mask: torch.Tensor
) -> torch.Tensor:
    """|dNDCG@k_ij| for ordered pairs with rel_i > rel_j (0 elsewhere): (B, L, L), no grad."""
    n_lists, list_len = scores.shape
    ranked = scores.masked_fill(~mask, float("-inf"))  # padding sorts last
    order = torch.argsort(ranked, dim=1, descending=True, stable=True)  # (B, L)
    positions = torch.empty_like(order)
    steps = torch.arange(1, list_len + 1, device=scores.device).expand(n_lists, -1)  # (B, L)
    positions.scatter_(1, order, steps)  # (B, L) 1-based position of each item
    discount = torch.where(
        positions <= k, 1.0 / torch.log2(1.0 + positions.to(scores.dtype)), 0.0
    )  # (B, L)
    gains = torch.where(mask, torch.exp2(relevance) - 1.0, 0.0)  # (B, L)
    ideal_gains = torch.sort(gains, dim=1, descending=True).values  # (B, L)
    ideal_discount = torch.where(
        steps[0] <= k, 1.0 / torch.log2(1.0 + steps[0].to(scores.dtype)), 0.0
    )  # (L,)
    ideal = (ideal_gains * ideal_discount).sum(dim=1)  # (B,)
    delta = torch.abs(
        (gains[:, :, None] - gains[:, None, :]) * (discount[:, :, None] - discount[:, None, :])
    )  # (B, L, L)
    delta = delta / torch.where(ideal > 0, ideal, 1.0)[:, None, None]
    pairs = (relevance[:, :, None] > relevance[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    return torch.where(pairs, delta, 0.0)


def lambdarank_loss(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    k: int = 15,
    sigma: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """LambdaRank surrogate: scores (B, L), grades (B, L), optional bool mask (B, L) -> scalar.

    loss = (1/B) sum_{i, j: rel_i > rel_j} |dNDCG@k_ij| * log(1 + exp(-sigma (s_i - s_j))), with
    |dNDCG| computed from the current ranking and detached, so d loss / d s equals the LambdaRank
    lambdas (`lambda_gradients`) divided by B. Masked-out items are padding: in no pair and
    ranked last, so padding never changes the loss.
    """
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    relevance = relevance.to(scores.dtype)
    with torch.no_grad():
        weights = _pair_weights(scores.detach(), relevance, k, mask)  # (B, L, L)
    margins = scores[:, :, None] - scores[:, None, :]  # (B, L, L): s_i - s_j
    pair_cost = F.softplus(-sigma * margins)  # log(1 + exp(-sigma (s_i - s_j)))
    return (weights * pair_cost).sum() / scores.shape[0]


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class L2RConfig:
    """How to train the L2R model. Lists mix a code's graded tokens with random tokens."""

    dim: int = 64
    n_grades: int = 5  # ranks 1..31 are graded (5 for rank 1 down to 1 for ranks 16-31)
    list_size: int = 32
    top_fraction: float = 0.5  # share of each list drawn from the code's graded tokens
    codes_per_batch: int = 128
    epochs: int = 40  # one epoch = every trainable code once
    max_steps: int | None = None  # stop earlier than `epochs` if set
    lr: float = 0.02
    # L2 on the factor rows a batch uses (not Adam's dense weight decay: that would drag every
    # untouched embedding row towards 0 at ~lr per step, since Adam normalises the tiny gradient).
    weight_decay: float = 1e-4
    holdout_fraction: float = 0.2  # of each code's graded tokens, kept out of training lists
    holdout_negatives: int = 16  # ungraded tokens per code also held out, so ranking is non-trivial
    k: int = 15
    sigma: float = 1.0
    init_std: float = 0.1


@dataclass
class L2RReport:
    """What training did: held-out NDCG@k of the model and of a random scorer on the same lists."""

    steps: int
    seconds: float
    final_loss: float  # mean loss over the last epoch
    heldout_ndcg: float  # NaN when nothing was held out
    random_ndcg: float
    n_train_codes: int
    n_eval_codes: int
    loss_history: list[float] = field(default_factory=list)  # mean loss per epoch


class ListSampler:
    """Draws training lists per code and looks up grades, keeping held-out pairs out of them."""

    def __init__(self, mi: np.ndarray, cfg: L2RConfig, rng: np.random.Generator) -> None:
        self.n_tokens, self.n_codes = mi.shape
        self.rng = rng
        self.tokens, self.grades = graded_tokens_per_code(mi, cfg.n_grades)  # (C, m) each
        graded = self.grades > 0  # (C, m)
        code_rows, slots = np.nonzero(graded)
        pair_keys = code_rows * self.n_tokens + self.tokens[code_rows, slots]
        key_order = np.argsort(pair_keys)
        self.graded_keys = pair_keys[key_order]  # sorted code * V + token of graded pairs
        self.graded_values = self.grades[code_rows, slots][key_order]

        self.trainable = graded.copy()  # (C, m): graded slots that may enter training lists
        heldout_tokens: list[np.ndarray] = []
        for code in range(self.n_codes):
            slots_graded = np.flatnonzero(graded[code])
            # Keep at least one graded token to train on; round half up.
            n_hold = min(int(cfg.holdout_fraction * slots_graded.size + 0.5), slots_graded.size - 1)
            held_slots = (
                rng.choice(slots_graded, size=n_hold, replace=False)
                if n_hold > 0
                else np.zeros(0, dtype=np.int64)
            )
            self.trainable[code, held_slots] = False
            negatives = np.zeros(0, dtype=np.int64)
            if n_hold > 0 and cfg.holdout_negatives > 0:
                pool_size = min(self.n_tokens, cfg.holdout_negatives + slots_graded.size)
                pool = rng.choice(self.n_tokens, size=pool_size, replace=False)
                pool = pool[~np.isin(pool, self.tokens[code, slots_graded])]
                negatives = pool[: cfg.holdout_negatives]
            heldout_tokens.append(np.concatenate([self.tokens[code, held_slots], negatives]))
        self.heldout = heldout_tokens
        held_keys = [code * self.n_tokens + held for code, held in enumerate(heldout_tokens)]
        self.heldout_keys = (
            np.sort(np.concatenate(held_keys)) if held_keys else np.zeros(0, dtype=np.int64)
        )
        self.train_codes = np.flatnonzero(self.trainable.any(axis=1))

    def grade_of(self, codes: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """True grade of each (code, token): codes (B,), tokens (B, L) -> (B, L) int64."""
        return _lookup(
            self.graded_keys, self.graded_values, codes[:, None] * self.n_tokens + tokens
        )

    def _is_heldout(self, codes: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        keys = codes[:, None] * self.n_tokens + tokens
        return _lookup(self.heldout_keys, np.ones_like(self.heldout_keys), keys) > 0

    def sample(self, codes: np.ndarray, cfg: L2RConfig) -> tuple[np.ndarray, np.ndarray]:
        """One list per code: tokens (B, L) int64 and their grades (B, L) int64."""
        n_codes, m = codes.size, self.tokens.shape[1]
        n_top = min(round(cfg.list_size * cfg.top_fraction), m)
        # Uniform choice without replacement among each code's trainable graded slots: random
        # keys with non-trainable slots pushed past every real key, then the smallest n_top.
        keys = self.rng.random((n_codes, m))
        trainable = self.trainable[codes]  # (B, m)
        keys[~trainable] = 2.0
        slots = np.argsort(keys, axis=1)[:, :n_top]  # (B, n_top)
        top_tokens = np.take_along_axis(self.tokens[codes], slots, axis=1)  # (B, n_top)
        top_valid = np.take_along_axis(trainable, slots, axis=1)  # (B, n_top)
        tokens = self.rng.integers(0, self.n_tokens, size=(n_codes, cfg.list_size))  # (B, L)
        tokens[:, :n_top] = np.where(top_valid, top_tokens, tokens[:, :n_top])
        # Random fill must never reveal a held-out pair; redraw until none does.
        redraw = self._is_heldout(codes, tokens)
        while redraw.any():
            tokens[redraw] = self.rng.integers(0, self.n_tokens, size=int(redraw.sum()))
            redraw = self._is_heldout(codes, tokens)
        return tokens, self.grade_of(codes, tokens)

    def evaluation_lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Held-out lists of codes with a graded held-out token, padded.

        Returns codes (E,), tokens (E, H), grades (E, H), mask (E, H) bool.
        """
        codes = np.array(
            [c for c, held in enumerate(self.heldout) if held.size], dtype=np.int64
        )  # (E,)
        width = max((self.heldout[c].size for c in codes), default=0)
        tokens = np.zeros((codes.size, width), dtype=np.int64)
        mask = np.zeros((codes.size, width), dtype=bool)
        for row, code in enumerate(codes):
            held = self.heldout[code]
            tokens[row, : held.size] = held
            mask[row, : held.size] = True
        grades = np.where(mask, self.grade_of(codes, tokens), 0)
        keep = grades.max(axis=1, initial=0) > 0
        return codes[keep], tokens[keep], grades[keep], mask[keep]


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """values[sorted_keys == key] for each key, 0 where the key is absent; keeps keys' shape."""
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=np.int64)
    where = np.clip(np.searchsorted(sorted_keys, keys), 0, sorted_keys.size - 1)
    return np.where(sorted_keys[where] == keys, values[where], 0).astype(np.int64)


def _evaluate(
    model: L2RModel,
    sampler: ListSampler,
    cfg: L2RConfig,
    rng: np.random.Generator,
    random_draws: int = 20,
) -> tuple[float, float, int]:
    """Mean held-out NDCG@k of the model and of random scores (mean of draws), and list count."""
    codes, tokens, grades, mask = sampler.evaluation_lists()
    if codes.size == 0:
        return float("nan"), float("nan"), 0
    with torch.no_grad():
        scores = model.score(torch.from_numpy(tokens), torch.from_numpy(codes)).numpy()  # (E, H)
    model_ndcg = float(np.mean(ndcg_at_k(scores, grades, cfg.k, mask)))
    random_ndcg = float(
        np.mean(
            [
                np.mean(ndcg_at_k(rng.random(tokens.shape), grades, cfg.k, mask))
                for _ in range(random_draws)
            ]
        )
    )
    return model_ndcg, random_ndcg, int(codes.size)


def train_l2r(
    mi: np.ndarray, cfg: L2RConfig, progress: Notify | None = None, *, seed: int = 0
) -> tuple[L2RModel, L2RReport]:
    """Train the L2R model to rank tokens per code by their MI grades (LambdaRank, Adam).

    mi: (V, C) normalised MI from the training split. Each code's held-out tokens (a share of its
    graded tokens plus some ungraded ones) never enter its training lists; the report gives NDCG@k
    of ranking them by model score, next to a random scorer on the same lists. Same mi and cfg
    give identical factors; `seed` fixes the initial factors and the lists drawn.
    """
    started = time.perf_counter()
    mi = np.asarray(mi, dtype=np.float32)
    if mi.ndim != 2:
        raise ValueError(f"mi must be (tokens, codes), got shape {mi.shape}")
    if cfg.list_size < 2 or cfg.codes_per_batch < 1 or cfg.n_grades < 1:
        raise ValueError("list_size must be >= 2, codes_per_batch and n_grades >= 1")
    n_tokens, n_codes = mi.shape
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    model = L2RModel(n_tokens, n_codes, cfg.dim, init_std=cfg.init_std, generator=generator)
    sampler = ListSampler(mi, cfg, rng)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    train_codes = sampler.train_codes
    steps_per_epoch = math.ceil(train_codes.size / cfg.codes_per_batch) if train_codes.size else 0
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    step = 0
    loss_history: list[float] = []
    model.train()
    while step < total:
        order = rng.permutation(train_codes)
        epoch_losses = []
        for batch_start in range(0, order.size, cfg.codes_per_batch):
            if step >= total:
                break
            codes = order[batch_start : batch_start + cfg.codes_per_batch]  # (B,)
            tokens, grades = sampler.sample(codes, cfg)  # (B, L) each
            token_ids = torch.from_numpy(tokens)
            code_ids = torch.from_numpy(codes)
            scores = model.score(token_ids, code_ids)  # (B, L)
            loss = lambdarank_loss(
                scores, torch.from_numpy(grades).float(), k=cfg.k, sigma=cfg.sigma
            )
            # Per scored pair: ||u_t||^2 for each of the L tokens and ||v_c||^2 once per score.
            penalty = (
                model.token_factors[token_ids].pow(2).sum()
                + cfg.list_size * model.code_factors[code_ids].pow(2).sum()
            ) / codes.size
            optimiser.zero_grad(set_to_none=True)
            (loss + cfg.weight_decay * penalty).backward()
            optimiser.step()
            step += 1
            epoch_losses.append(loss.item())
            if progress is not None:
                progress(ProgressEvent("l2r", step, total, {"loss": epoch_losses[-1]}))
        if epoch_losses:
            loss_history.append(float(np.mean(epoch_losses)))
    model.eval()

    heldout_ndcg, random_ndcg, n_eval = _evaluate(model, sampler, cfg, rng)
    report = L2RReport(
        steps=step,
        seconds=time.perf_counter() - started,
        final_loss=loss_history[-1] if loss_history else float("nan"),
        heldout_ndcg=heldout_ndcg,
        random_ndcg=random_ndcg,
        n_train_codes=int(train_codes.size),
        n_eval_codes=n_eval,
        loss_history=loss_history,
    )
    return model, report
