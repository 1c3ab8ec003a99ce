"""Served latency of a fused bundle against the same network alone, side by side in one run.

Both predictors serve the same notes, one note per call (batch 1), in passes over all the notes
(each path's pass in turn, rotated; a note's time is its median over the passes) so machine noise
falls on both alike; each call is `predict(top_k=...)`, tokenisation, lexicon,
neighbours, combiner and evidence included. Usage:

    python benchmarks/fusion_latency.py --model bundles/demo-d-es --lang es --codes D

The network alone is the same bundle served with `OnnxPredictor(fused=False)`. For a bundle with a
shortlist, `--shortlist 64,256` also serves it at those S, and both paths at full decoding (every
code decoded: the served path before the shortlist); the ratio column is against the network alone
at full decoding then.
"""

from __future__ import annotations

import argparse
import statistics
import time
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


def served_paths(model: Path, threads: int, sizes: list[int]) -> dict[str, OnnxPredictor]:
    """The network alone first (the ratios' base), then the fused model; with `sizes`, both at
    full decoding and then at each S."""
    if not sizes:
        return {
            "network alone": OnnxPredictor(model, threads, 1, fused=False),
            "fused": OnnxPredictor(model, threads, 1),
        }
    every = load_bundle(model).metadata.n_network_codes
    paths = {}
    for size in (every, *sizes):
        label = "full decoding" if size == every else f"S = {size}"
        paths[f"network alone, {label}"] = OnnxPredictor(
            model, threads, 1, fused=False, shortlist_size=size
        )
        paths[f"fused, {label}"] = OnnxPredictor(model, threads, 1, shortlist_size=size)
    return paths


def timed_rounds(
    predictors: dict[str, OnnxPredictor], notes: list[str], top_k: int, rounds: int
) -> dict[str, list[float]]:
    """Per path, each note's median time (ms) over `rounds` passes. In each pass every path codes
    all the notes in turn, the paths in rotated order: alternating paths note by note made each
    ONNX Runtime session start while the others' thread pools were still spinning, which doubled
    every figure on 2 cores (a path served alone ran in half the time)."""
    names = list(predictors)
    per_note: dict[str, list[list[float]]] = {name: [[] for _ in notes] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            for index, note in enumerate(notes):
                started = time.perf_counter()
                predictors[name].predict([note], top_k=top_k)
                per_note[name][index].append((time.perf_counter() - started) * 1000)
    return {name: [statistics.median(times) for times in per_note[name]] for name in names}


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
    args = parser.parse_args()

    notes = load_notes("codiesp", args.path, args.split, lang=args.lang, codes=args.codes)
    notes = notes[: args.limit] if args.limit else notes
    sizes = [int(size) for size in args.shortlist.split(",") if size]
    predictors: dict[str, OnnxPredictor] = {}
    for model in args.model:
        prefix = f"{model.name}: " if len(args.model) > 1 else ""
        paths = served_paths(model, args.threads, sizes)
        predictors |= {f"{prefix}{name}": predictor for name, predictor in paths.items()}
    for predictor in predictors.values():
        predictor.warm_up()
    facts = machine_facts(["onnxruntime", "numpy"])
    timings = timed_rounds(predictors, notes, args.top_k, args.rounds)
    summaries = {name: summarize(values) for name, values in timings.items()}
    base = next(iter(summaries.values())).p50
    rows = [
        [name, str(s.n), fmt_ms(s.p50), fmt_ms(s.p95), fmt_ms(s.mean), f"{s.p50 / base:.2f}x"]
        for name, s in summaries.items()
    ]
    report = "\n\n".join(
        part
        for part in (
            f"`{command_line()}`",
            facts_list(facts),
            markdown_table(
                ["served path", "notes", "p50 ms", "p95 ms", "mean ms", "p50 ratio"], rows
            ),
            busy_warning(),
        )
        if part
    )
    emit(report, args.out)


if __name__ == "__main__":
    main()
