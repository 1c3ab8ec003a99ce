"""Served latency of a fused bundle against the same network alone, side by side in one run.

Both predictors serve the same notes, one note per call (batch 1), in passes over all the notes
(each path's pass in turn, rotated; a note's time is its median over the passes) so machine noise
falls on both alike; each call is `predict(top_k=...)`, tokenisation, lexicon,
neighbours, combiner and evidence included. Usage:

    python benchmarks/fusion_latency.py --model bundles/demo-d-es --lang es --codes D

The network alone is the same bundle served with `OnnxPredictor(fused=False)`. For a bundle with a
shortlist, `--shortlist 64,256` also serves it at those S, and both paths at full decoding (every
code decoded: the served path before the shortlist); the ratio column is against the network alone
at full decoding then. `--transformer` adds a PLM-ICD-size transformer (RoBERTa-base
configuration, random weights, nothing downloaded; `inference_latency.PlmIcdReference`) to the
same passes, reading as many tokens per note as the bundle's tokenizer gives it, and a column of
how many times slower it is than each path (issue 11: >= 50x the served path). Needs torch.
`--batch 16` also times each path on the same notes in requests of 16 (in note order), in the
same passes, and reports the time per note against batch 1 over the same notes; then, in passes
of their own, each request against its own notes' single calls timed right after it (the median
of those paired ratios is the figure that holds still on a noisy machine).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _common import (
    DEFAULT_CORPUS_PATH,
    HelpFormatter,
    busy_warning,
    command_line,
    emit,
    facts_list,
    fmt_ms,
    load_notes,
    machine_facts,
    markdown_table,
    summarize,
)

from model.bundle import load_bundle
from model.runtime import OnnxPredictor

TRANSFORMER = "PLM-ICD-size transformer"
PROPOSALS_FIRST = "fused, proposals before the graph"


def served_paths(
    model: Path, threads: int, sizes: list[int], proposals_first: bool = False
) -> dict[str, OnnxPredictor]:
    """The network alone first (the ratios' base), then the fused model; with `sizes`, both at
    full decoding and then at each S. Each with the runtime's own batch size, as served. With
    `proposals_first`, also the fused model with the lexicon and neighbours read before the graph
    starts (the served path before 2026-12-01)."""
    if not sizes:
        paths = {
            "network alone": OnnxPredictor(model, threads, fused=False),
            "fused": OnnxPredictor(model, threads),
        }
        if proposals_first:
            paths[PROPOSALS_FIRST] = OnnxPredictor(model, threads, proposals_first=True)
        return paths
    every = load_bundle(model).metadata.n_network_codes
    paths = {}
    for size in (every, *sizes):
        label = "full decoding" if size == every else f"S = {size}"
        paths[f"network alone, {label}"] = OnnxPredictor(
            model, threads, fused=False, shortlist_size=size
        )
        paths[f"fused, {label}"] = OnnxPredictor(model, threads, shortlist_size=size)
    return paths


def served_calls(
    predictors: dict[str, OnnxPredictor], notes: list[str], top_k: int
) -> dict[str, list[Callable[[], object]]]:
    """Per path, one call per note: `predict([note], top_k)`."""
    return {
        name: [partial(predictor.predict, [note], top_k=top_k) for note in notes]
        for name, predictor in predictors.items()
    }


def transformer_calls(
    predictor: OnnxPredictor, notes: list[str], args: argparse.Namespace
) -> tuple[list[Callable[[], object]], str]:
    """One call per note of the PLM-ICD-size reference over the bundle's network codes: random
    ids, as many as the bundle's tokenizer reads in that note, padded to whole 512-token chunks
    as PLM-ICD runs them (a transformer's own subwords would be more, not fewer)."""
    import numpy as np
    import torch
    from inference_latency import PlmIcdReference
    from label_space_latency import transformer_inputs

    torch.set_num_threads(args.threads)
    n_codes = predictor.metadata.n_network_codes
    layers, hidden = args.transformer_layers, args.transformer_hidden
    reference = PlmIcdReference(n_codes, layers, hidden).eval()
    rng = np.random.default_rng(0)
    calls: list[Callable[[], object]] = []
    for note in predictor.tokenize(notes):
        ids, mask = transformer_inputs(len(note), reference.config.vocab_size, rng)

        def run(ids: torch.Tensor = ids, mask: torch.Tensor = mask) -> object:
            with torch.inference_mode():
                return reference(ids, mask)

        calls.append(run)
    described = (
        f"RobertaModel({layers} layers, {hidden} hidden, RobertaConfig() defaults otherwise), "
        f"random weights, LAAT head over the bundle's {n_codes:,} network codes, torch "
        f"{torch.__version__} with {args.threads} threads; per note as many random ids as the "
        "bundle's tokenizer reads, in 512-token chunks"
    )
    return calls, described


def timed_rounds(
    calls: dict[str, list[Callable[[], object]]], rounds: int
) -> dict[str, list[float]]:
    """Per path, each note's median time (ms) over `rounds` passes. In each pass every path codes
    all the notes in turn, the paths in rotated order: alternating paths note by note made each
    ONNX Runtime session start while the others' thread pools were still spinning, which doubled
    every figure on 2 cores (a path served alone ran in half the time)."""
    names = list(calls)
    per_note: dict[str, list[list[float]]] = {name: [[] for _ in calls[name]] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            for index, call in enumerate(calls[name]):
                started = time.perf_counter()
                call()
                per_note[name][index].append((time.perf_counter() - started) * 1000)
    return {name: [statistics.median(times) for times in per_note[name]] for name in names}


def whole_requests(notes: list[str], size: int) -> list[list[str]]:
    """The notes as requests of `size`, in note order; the remainder that fills no request is
    left out, so every request is timed at the same size."""
    return [notes[i : i + size] for i in range(0, len(notes) - size + 1, size)]


def batch_calls(
    predictors: dict[str, OnnxPredictor], notes: list[str], top_k: int, size: int
) -> dict[str, list[Callable[[], object]]]:
    """Per path, one call per request of `size` notes (whole requests only, in note order)."""
    groups = whole_requests(notes, size)
    return {
        f"{name}, batch {size}": [
            partial(predictor.predict, group, top_k=top_k) for group in groups
        ]
        for name, predictor in predictors.items()
    }


def paired_batch_ratios(
    predictors: dict[str, OnnxPredictor], notes: list[str], top_k: int, size: int, rounds: int
) -> dict[str, list[float]]:
    """Per path, per request of `size` notes (whole requests, in note order): its time against
    the same notes' one-by-one calls timed right after it, the median over `rounds` passes.
    Pairing each request with its own notes' single calls keeps a slow spell of the machine from
    falling on one side only (this VM's speed drifts by a third between minutes)."""
    groups = whole_requests(notes, size)
    ratios: dict[str, list[list[float]]] = {name: [[] for _ in groups] for name in predictors}
    for _ in range(rounds):
        for name, predictor in predictors.items():
            for index, group in enumerate(groups):
                started = time.perf_counter()
                predictor.predict(group, top_k=top_k)
                batched = time.perf_counter() - started
                started = time.perf_counter()
                for note in group:
                    predictor.predict([note], top_k=top_k)
                ratios[name][index].append(batched / (time.perf_counter() - started))
    return {name: [statistics.median(r) for r in per_group] for name, per_group in ratios.items()}


def batch_table(
    timings: dict[str, list[float]], paired: dict[str, list[float]], paths: list[str], size: int
) -> str:
    """Per path, ms per note at batch 1 and at batch `size` over the notes of whole requests:
    the sum of each call's median, over the notes it coded; and the median of the paired
    per-request ratios (`paired_batch_ratios`)."""
    rows = []
    for name in paths:
        groups = timings[f"{name}, batch {size}"]
        n_notes = size * len(groups)
        single = sum(timings[name][:n_notes]) / n_notes
        batched = sum(groups) / n_notes
        rows.append(
            [
                name,
                str(n_notes),
                f"{single:.2f}",
                f"{batched:.2f}",
                f"{batched / single:.2f}x",
                f"{statistics.median(paired[name]):.2f}x",
            ]
        )
    headers = [
        "served path",
        "notes",
        "batch 1 ms per note",
        f"batch {size} ms per note",
        "ratio",
        "paired ratio (median per request)",
    ]
    return markdown_table(headers, rows)


def ratio_column(timings: dict[str, list[float]], name: str) -> str:
    """How many times slower the transformer is than path `name`: the ratio of the p50s, then
    the median of the per-note ratios (the same notes, the same passes)."""
    if TRANSFORMER not in timings or name == TRANSFORMER:
        return ""
    theirs, ours = timings[TRANSFORMER], timings[name]
    per_note = statistics.median(t / o for t, o in zip(theirs, ours, strict=True))
    return f"{statistics.median(theirs) / statistics.median(ours):.1f}x / {per_note:.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        required=True,
        help="a bundle with a fusion section; repeat to serve several side by side (fp32, int8)",
    )
    parser.add_argument("--path", default=DEFAULT_CORPUS_PATH)
    parser.add_argument("--lang", default="es")
    parser.add_argument("--codes", default="D")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="notes to time (default: all)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--shortlist", default="", help="comma-separated S to serve besides")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the notes per path")
    parser.add_argument(
        "--transformer",
        action="store_true",
        help="also time a PLM-ICD-size transformer on the same notes (needs torch)",
    )
    parser.add_argument("--transformer-layers", type=int, default=12, help="12: roberta-base")
    parser.add_argument("--transformer-hidden", type=int, default=768, help="768: roberta-base")
    parser.add_argument("--batch", type=int, default=0, help="also time requests of this size")
    parser.add_argument(
        "--proposals-first",
        action="store_true",
        help="also the fused path with the lexicon and neighbours before the graph (as before)",
    )
    args = parser.parse_args()
    if args.proposals_first and args.shortlist:
        parser.error("--proposals-first serves the bundle's own S: leave out --shortlist")

    notes = load_notes("codiesp", args.path, args.split, lang=args.lang, codes=args.codes)
    notes = notes[: args.limit] if args.limit else notes
    sizes = [int(size) for size in args.shortlist.split(",") if size]
    predictors: dict[str, OnnxPredictor] = {}
    for model in args.model:
        prefix = f"{model.name}: " if len(args.model) > 1 else ""
        paths = served_paths(model, args.threads, sizes, args.proposals_first)
        predictors |= {f"{prefix}{name}": predictor for name, predictor in paths.items()}
    for predictor in predictors.values():
        predictor.warm_up()
    facts = machine_facts(["onnxruntime", "numpy", *(["torch"] if args.transformer else [])])
    calls = served_calls(predictors, notes, args.top_k)
    if args.batch > 1:
        calls |= batch_calls(predictors, notes, args.top_k, args.batch)
    if args.transformer:
        calls[TRANSFORMER], described = transformer_calls(
            next(iter(predictors.values())), notes, args
        )
        facts.append(("transformer", described))
    timings = timed_rounds(calls, args.rounds)
    paired = (
        paired_batch_ratios(predictors, notes, args.top_k, args.batch, args.rounds)
        if args.batch > 1
        else {}
    )
    single = [name for name in timings if not name.endswith(f", batch {args.batch}")]
    summaries = {name: summarize(timings[name]) for name in single}
    base = next(iter(summaries.values())).p50
    rows = [
        [name, str(s.n), fmt_ms(s.p50), fmt_ms(s.p95), fmt_ms(s.mean), f"{s.p50 / base:.2f}x"]
        + ([ratio_column(timings, name)] if args.transformer else [])
        for name, s in summaries.items()
    ]
    headers = ["served path", "notes", "p50 ms", "p95 ms", "mean ms", "p50 ratio"]
    if args.transformer:
        headers.append("transformer slower by (p50s / per note)")
    report = "\n\n".join(
        part
        for part in (
            f"`{command_line()}`",
            facts_list(facts),
            markdown_table(headers, rows),
            batch_table(timings, paired, list(predictors), args.batch) if args.batch > 1 else "",
            busy_warning(),
        )
        if part
    )
    emit(report, args.out)


if __name__ == "__main__":
    main()
