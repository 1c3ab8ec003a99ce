"""Served latency against label-space size and note length, a PLM-ICD-size transformer on the same
notes, and batch 1 against batch 16 (issue 11, item 5), each table measured side by side in one
run. Bundles are synthetic (benchmarks/synthetic_bundle.py: the demo network with random weights,
exported and written by the real code) with 1,767, 8,929 and 74,736 codes; latency depends on
shapes, not weights. Needs torch (building bundles, the transformer).

    python benchmarks/label_space_latency.py --out runs/label-space.md
    python benchmarks/label_space_latency.py --shortlist 64,256   # also at these S
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import (
    DEFAULT_CORPUS_PATH,
    HelpFormatter,
    busy_warning,
    command_line,
    emit,
    facts_list,
    fmt_ms,
    load_average,
    load_notes,
    machine_facts,
    markdown_table,
    parse_int_list,
)
from synthetic_bundle import cached_bundle, label_space, note_of_length

from model.batching import length_batches
from model.runtime import OnnxPredictor

TOP_K = 10
TRANSFORMER_CHUNK = 512


@dataclass
class Served:
    """One way of serving one bundle: a predictor and how it is named in the tables."""

    label: str
    n_codes: int
    predictor: OnnxPredictor
    notes: dict[int, str]  # tokens -> note text of that many tokens for this bundle's tokenizer


class OneCallPredictor(OnnxPredictor):
    """The runtime's grouping before issue 11: one graph call for up to `batch_size` notes sorted
    by length, whatever their windows and the codes x tokens of the call."""

    def _batches(self, lengths: Sequence[int]) -> list[np.ndarray]:
        return length_batches(lengths, self._batch_size, self._max_batch_tokens)


def shortlist_of(predictor: OnnxPredictor) -> int | None:
    """S the predictor serves (None: the graph decodes every code, or no shortlist support)."""
    return getattr(predictor, "shortlist_size", None)


def make_predictor(
    bundle: Path, threads: int, shortlist: int | None, cls: type[OnnxPredictor] = OnnxPredictor
) -> OnnxPredictor:
    options = {} if shortlist is None else {"shortlist_size": shortlist}
    return cls(bundle, threads=threads, batch_size=16, **options)


def has_shortlist(bundle: Path) -> bool:
    from model.bundle import load_bundle

    return getattr(load_bundle(bundle).metadata, "shortlist", None) is not None


def served_ways(args: argparse.Namespace, texts: Sequence[str]) -> list[Served]:
    """Per label-space size: full decoding, and each S asked for where the bundle has one."""
    ways = []
    first = list(dict.fromkeys(args.first_codes))
    for size in args.size_list:
        codes = label_space(size, first)
        bundle = cached_bundle(
            args.cache,
            texts,
            codes,
            network=args.network,
            vocab_size=args.vocab,
            max_tokens=max(args.length_list),
        )
        shortlisted = has_shortlist(bundle)
        settings: list[int | None] = [size] if shortlisted else [None]
        settings += args.shortlist_list if shortlisted else []
        for s in settings:
            label = f"{size:,} codes, " + ("full decoding" if s in (None, size) else f"S = {s}")
            ways.append(served_way(bundle, label, size, s, texts, args))
        if args.int8 and shortlisted:
            int8 = int8_bundle(bundle)
            for s in args.shortlist_list:
                ways.append(
                    served_way(int8, f"{size:,} codes, S = {s}, int8", size, s, texts, args)
                )
    return ways


def served_way(
    bundle: Path,
    label: str,
    size: int,
    s: int | None,
    texts: Sequence[str],
    args: argparse.Namespace,
) -> Served:
    predictor = make_predictor(bundle, args.threads, s)
    predictor.warm_up()
    notes = {n: note_of_length(texts, predictor.tokenizer, n) for n in args.length_list}
    return Served(label, size, predictor, notes)


def int8_bundle(bundle: Path) -> Path:
    """The dynamic-int8 copy of a synthetic bundle (`plant-icd quantize` without the dev check:
    random weights have no MAP to keep), cached beside it."""
    from training.quantize import quantize_bundle

    target = bundle.parent / f"{bundle.name}-int8"
    if not (target / "bundle.json").is_file():
        quantize_bundle(bundle, target)
    return target


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1e3


def interleaved(
    systems: dict[str, dict[int, Callable[[], object]]],
    rounds: int,
    skip: set[tuple[str, int]],
    repeats: int = 1,
) -> dict[tuple[str, int], float]:
    """Median ms per (system, length) over `rounds` x `repeats` calls; in each round every system
    runs each length once untimed, then `repeats` timed calls in a row, systems in an order
    rotated from round to round. Timing the first call after another system ran measured the
    other ONNX Runtime session's still-spinning thread pool too: on 2 cores that doubled the
    figures of the served paths. One timed call per round moved a cell by 30% between runs."""
    names = list(systems)
    for name in names:
        shortest = min(systems[name])
        systems[name][shortest]()
    times: dict[tuple[str, int], list[float]] = {}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in [*names[shift:], *names[:shift]]:
            for length, call in systems[name].items():
                if (name, length) not in skip:
                    call()
                    times.setdefault((name, length), []).extend(timed(call) for _ in range(repeats))
        print(f"round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
    return {key: float(np.median(values)) for key, values in times.items()}


# -- the PLM-ICD-size reference ----------------------------------------------------------------


def transformer_inputs(n_tokens: int, vocab: int, rng: np.random.Generator) -> tuple:
    """Random ids for one note of `n_tokens`, padded to whole 512-token chunks, as PLM-ICD
    splits notes; nothing truncated (ours reads the same tokens)."""
    total = math.ceil(n_tokens / TRANSFORMER_CHUNK) * TRANSFORMER_CHUNK
    ids = np.ones((1, total), dtype=np.int64)  # RoBERTa pad id 1
    mask = np.zeros((1, total), dtype=np.int64)
    ids[0, :n_tokens] = rng.integers(3, vocab, size=n_tokens)
    mask[0, :n_tokens] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def transformer_calls(
    args: argparse.Namespace, n_codes: int
) -> tuple[dict[int, Callable[[], object]], str]:
    from inference_latency import PlmIcdReference

    reference = PlmIcdReference(n_codes, args.transformer_layers, args.transformer_hidden).eval()
    rng = np.random.default_rng(0)
    calls: dict[int, Callable[[], object]] = {}
    for length in args.length_list:
        ids, mask = transformer_inputs(length, reference.config.vocab_size, rng)

        def run(ids: torch.Tensor = ids, mask: torch.Tensor = mask) -> object:
            with torch.inference_mode():
                return reference(ids, mask)

        calls[length] = run
    described = (
        f"RobertaModel({args.transformer_layers} layers, {args.transformer_hidden} hidden; "
        "RobertaConfig() defaults otherwise, max_position_embeddings 514), random weights, "
        f"nothing downloaded, notes as 512-token chunks (random ids, as many tokens as ours "
        f"reads, none truncated), LAAT head over {n_codes:,} codes"
    )
    return calls, described


# -- tables ----------------------------------------------------------------------------------


def length_table(
    ways: Sequence[Served], medians: dict[tuple[str, int], float], lengths: Sequence[int]
) -> str:
    rows = [
        [way.label, *[fmt_ms(medians.get((way.label, n), float("nan"))) for n in lengths]]
        for way in ways
    ]
    return markdown_table(["served path (ms per note)", *[f"{n:,} tokens" for n in lengths]], rows)


def transformer_table(
    ways: Sequence[Served], medians: dict[tuple[str, int], float], lengths: Sequence[int]
) -> str:
    ours = [way for way in ways if way.n_codes == ways[0].n_codes]
    rows = [["transformer ms", *[fmt_ms(medians[("transformer", n)]) for n in lengths]]]
    for way in ours:
        rows.append(
            [
                f"transformer / ours ({way.label})",
                *[f"{medians[('transformer', n)] / medians[(way.label, n)]:.1f}x" for n in lengths],
            ]
        )
    return markdown_table(["PLM-ICD-size transformer", *[f"{n:,} tokens" for n in lengths]], rows)


def batch_section(args: argparse.Namespace, ways: Sequence[Served]) -> list[str]:
    """Batch 1 against batch 16 on real notes, for the smallest label space's ways."""
    notes = load_notes(
        args.corpus, args.corpus_path, args.split, lang=args.lang, limit=args.batch_notes
    )
    groups = [notes[i : i + 16] for i in range(0, len(notes) - 15, 16)]
    systems: dict[str, Callable[[], object]] = {}
    for way in (way for way in ways if way.n_codes == ways[0].n_codes):
        one_call = make_predictor(
            way.predictor.bundle.directory,
            args.threads,
            shortlist_of(way.predictor),
            OneCallPredictor,
        )
        predictor = way.predictor
        systems[f"{way.label}: batch 1"] = lambda p=predictor: [
            p.predict([text], TOP_K) for group in groups for text in group
        ]
        systems[f"{way.label}: batch 16, one call (before)"] = lambda p=one_call: [
            p.predict(group, TOP_K) for group in groups
        ]
        systems[f"{way.label}: batch 16 (served)"] = lambda p=predictor: [
            p.predict(group, TOP_K) for group in groups
        ]
    medians = interleaved({name: {0: call} for name, call in systems.items()}, args.rounds, set())
    n_notes = 16 * len(groups)
    rows = []
    for name in systems:
        per_note = medians[(name, 0)] / n_notes
        batch1 = medians[(name.rsplit(": ", 1)[0] + ": batch 1", 0)] / n_notes
        rows.append([name, fmt_ms(per_note, 2), f"{per_note / batch1:.2f}x"])
    return [
        f"{n_notes} {args.corpus} {args.split} notes ({args.lang}) in groups of 16, as a "
        "request of 16 notes; the median over rounds of the whole set's time, per note.",
        "",
        markdown_table(["way", "ms per note", "vs batch 1"], rows),
    ]


# -- the service with the largest label space ----------------------------------------------------


def serve_check(bundle: Path, note: str, threads: int) -> str:
    """Start the app (SQLite) on `bundle`, wait until ready, POST one note: what happened."""
    import httpx

    from service.core.config import Settings
    from service.db import admin
    from service.main import create_app

    async def check(app: object, started: float) -> str:
        async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
            while not app.state.inference.is_ready():  # type: ignore[attr-defined]
                await asyncio.sleep(0.2)
            ready_s = time.perf_counter() - started
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                sent = time.perf_counter()
                response = await client.post("/v1/predictions", json={"text": note})
                answer_ms = (time.perf_counter() - sent) * 1e3
        codes = len(response.json().get("codes", [])) if response.status_code == 201 else 0
        return (
            f"ready {ready_s:.1f} s after start (bundle load, warm-up, catalogues); POST "
            f"/v1/predictions answered {response.status_code} with {codes} codes in "
            f"{answer_ms:,.0f} ms; peak RSS of the benchmark process {peak_rss_gib():.1f} GiB"
        )

    with tempfile.TemporaryDirectory() as work:
        url = f"sqlite:///{work}/audit.db"
        admin.upgrade(url)
        settings = Settings(
            bundle_dir=bundle, database_url=url, inference_threads=threads, log_level="WARNING"
        )
        started = time.perf_counter()
        return asyncio.run(check(create_app(settings), started))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# -- the report ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--sizes", default="1767,8929,74736", help="label-space sizes (codes)")
    parser.add_argument("--lengths", default="500,1500,3000,6000", help="note lengths (tokens)")
    parser.add_argument(
        "--shortlist", default="", help="S values to serve too (bundles with a shortlist)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every system")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed calls in a row per round (served paths)"
    )
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads, ORT and torch")
    parser.add_argument(
        "--max-cells",
        type=float,
        default=2.5e8,
        help="skip (codes x tokens) above this for full decoding (memory: ~4 bytes x cells "
        "per decoder tensor)",
    )
    parser.add_argument("--network", default="demo", help="demo or tiny (smoke tests)")
    parser.add_argument("--vocab", type=int, default=8000, help="BPE vocabulary (at most)")
    parser.add_argument("--cache", type=Path, default=Path("runs/synthetic-bundles"))
    parser.add_argument("--corpus", default="codiesp", help="corpus name (codiesp, jsonl, ...)")
    parser.add_argument("--corpus-path", default=DEFAULT_CORPUS_PATH)
    parser.add_argument("--split", default="dev", help="notes timed (train: tokenizer, codes)")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--batch-notes", type=int, default=64, help="real notes, batch table")
    parser.add_argument("--transformer-layers", type=int, default=12, help="12: roberta-base")
    parser.add_argument("--transformer-hidden", type=int, default=768, help="768: roberta-base")
    parser.add_argument("--no-transformer", action="store_true")
    parser.add_argument(
        "--int8", action="store_true", help="also serve each shortlisted bundle's int8 copy"
    )
    parser.add_argument("--no-serve-check", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    try:
        args.size_list = parse_int_list(args.sizes)
        args.length_list = parse_int_list(args.lengths)
        args.shortlist_list = parse_int_list(args.shortlist) if args.shortlist else []
    except ValueError as error:
        parser.error(str(error))
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be positive")
    return args


def corpus_texts(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Training texts (tokenizers, note text) and, for CodiEsp, its training D codes first."""
    from training.corpora import load_corpus

    options = {"lang": args.lang, "codes": "D"} if args.corpus == "codiesp" else {}
    documents = [d for d in load_corpus(args.corpus, args.corpus_path, "train", **options)]
    codes = sorted({code for document in documents for code in document.codes})
    return [d.text for d in documents if d.text.strip()], codes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    facts = machine_facts(["numpy", "onnxruntime", "torch", "transformers", "tokenizers"])
    busy = busy_warning()
    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    texts, args.first_codes = corpus_texts(args)
    ways = served_ways(args, texts)
    systems = {
        way.label: {
            n: (lambda p=way.predictor, t=note: p.predict([t], TOP_K))
            for n, note in way.notes.items()
        }
        for way in ways
    }
    skip = {
        (way.label, n)
        for way in ways
        for n in args.length_list
        if shortlist_of(way.predictor) in (None, way.n_codes) and way.n_codes * n > args.max_cells
    }
    described = "not run"
    if not args.no_transformer:
        systems["transformer"], described = transformer_calls(args, args.size_list[0])
    medians = interleaved(systems, args.rounds, skip, args.repeats)
    lines = [
        "## Served latency against label-space size, note length and batch (issue 11)",
        "",
        "```",
        f"$ {command_line()}",
        "```",
        "",
        facts_list(
            [
                *facts,
                ("load average (1/5/15 min) after the length tables", load_average()),
                ("threads", f"{args.threads} intra-op (ONNX Runtime inter-op 1, as served; torch)"),
                (
                    "bundles",
                    f"synthetic {args.network} network, random weights: "
                    + "; ".join(
                        f"{way.label} ({way.predictor.tokenizer.vocab_size:,}-token vocabulary)"
                        for way in ways
                    ),
                ),
                ("transformer reference", described),
            ]
        ),
        "",
        *([busy, ""] if busy else []),
        "### Per note against note length and label-space size (batch 1, ms)",
        "",
        "OnnxPredictor.predict on one note (tokenisation, graph, scores, ranking of the top "
        f"{TOP_K}, highlights), notes of real {args.corpus} {args.split} text cut to the token "
        f"count; median of {args.rounds} rounds x {args.repeats} calls in a row, all systems "
        "in each round (rotated order; the transformer too). "
        f"n/a: not run (full decoding over more than {args.max_cells:.2g} codes x tokens).",
        "",
        length_table(ways, medians, args.length_list),
        "",
    ]
    if not args.no_transformer:
        lines += [
            "### Against a PLM-ICD-size transformer (same notes, same run)",
            "",
            transformer_table(ways, medians, args.length_list),
            "",
        ]
    lines += ["### Batch 1 against batch 16", "", *batch_section(args, ways), ""]
    lines += [f"- load average (1/5/15 min) at end: {load_average()}", ""]
    if not args.no_serve_check:
        largest = max(ways, key=lambda way: way.n_codes)
        check = serve_check(
            largest.predictor.bundle.directory, largest.notes[min(args.length_list)], args.threads
        )
        lines += [f"Service with {largest.n_codes:,} codes: {check}.", ""]
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
