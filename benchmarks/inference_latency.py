"""Inference latency of a PLANT bundle (issue 3): ONNX Runtime as served, the raw ONNX session, the
same network in PyTorch, and a PLM-ICD-sized transformer, side by side on real notes at batch 1
and 16, plus latency against note length with a linear fit. Prints a Markdown report.

Run from the repository root, e.g.
`python benchmarks/inference_latency.py --bundle bundles/plant-d-en --torch-state runs/.../x.pt`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
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
    summarize,
)
from torch import Tensor, nn

from model.bundle import load_bundle
from model.metadata import GRAPH_OUTPUTS
from model.nn.checkpoint import load_checkpoint
from model.nn.network import PlantClassifier, PlantConfig
from model.runtime import OnnxPredictor
from model.tokenizer import NoteTokenizer
from training.console import progress_bar

SYSTEMS = ("predictor", "session", "torch", "transformer")
LABELS = {
    "predictor": "ONNX Runtime, served path (OnnxPredictor.predict: tokenise + graph + highlights)",
    "session": "ONNX Runtime, raw session (token ids in)",
    "torch": "PyTorch, same network (PlantClassifier, token ids in)",
    "transformer": "PLM-ICD-size transformer (RoBERTa-base + LAAT, token ids in)",
}
TARGET_P50_MS = 20.0
TRANSFORMER_CHUNK = 512
TRANSFORMER_MAX_TOKENS = 3072


@dataclass(frozen=True)
class Unit:
    """One timed call: the texts of a batch, PLANT's padded token ids and the transformer's."""

    texts: list[str]
    input_ids: np.ndarray  # (B, T) int64, bundle tokenizer, truncated to max_tokens
    attention_mask: np.ndarray  # (B, T) int64
    transformer_ids: np.ndarray  # (B, Tc) int64, Tc a multiple of 512, <= 3072
    transformer_mask: np.ndarray  # (B, Tc) int64


@dataclass
class System:
    name: str
    run: Callable[[Unit], object]
    n_units: int  # times only the first n_units units (the transformer is slow)
    warmup: int = 3  # untimed calls at the start of each block


# -- the PLM-ICD-sized reference -------------------------------------------------------------------


class LaatHead(nn.Module):
    """PLM-ICD's label attention (LAAT): per code a softmax over the valid positions of
    U tanh(W h_t), a context per code, and a per-code linear output.

    forward(states (B, T, d), mask (B, T)) -> logits (B, C)
    """

    def __init__(self, d_model: int, n_codes: int) -> None:
        super().__init__()
        self.project = nn.Linear(d_model, d_model, bias=False)  # W (d, d), as PLM-ICD
        self.score = nn.Linear(d_model, n_codes, bias=False)  # U (C, d)
        self.output = nn.Linear(d_model, n_codes)  # per-code weight (C, d) and bias (C,)

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        scores = self.score(torch.tanh(self.project(states))).transpose(1, 2)  # (B, C, T)
        scores = scores.masked_fill(~mask.bool().unsqueeze(1), float("-inf"))  # (B, C, T)
        context = torch.softmax(scores, dim=-1) @ states  # (B, C, d)
        return (self.output.weight * context).sum(dim=-1) + self.output.bias  # (B, C)


class PlmIcdReference(nn.Module):
    """A RoBERTa encoder over 512-token chunks (every chunk of the padded note, as PLM-ICD runs
    them), states joined back per note, then the LAAT head.

    forward(input_ids (B, Tc), attention_mask (B, Tc)), Tc a multiple of 512 -> logits (B, C)
    """

    def __init__(self, n_codes: int, layers: int, hidden: int) -> None:
        super().__init__()
        # Imported here: transformers is slow to import and only this reference needs it.
        from transformers import RobertaConfig, RobertaModel

        # RobertaConfig() defaults are roberta-base (12 layers, 768 hidden, vocab 50265), except
        # max_position_embeddings: roberta-base's published config has 514 (positions start after
        # pad id 1), which a 512-token chunk needs; 512 would only allow 510 tokens.
        heads = max(1, hidden // 64)
        self.config = RobertaConfig(
            num_hidden_layers=layers,
            hidden_size=hidden,
            num_attention_heads=heads,
            intermediate_size=4 * hidden,
            max_position_embeddings=TRANSFORMER_CHUNK + 2,
            type_vocab_size=1,
        )
        self.backbone = RobertaModel(self.config, add_pooling_layer=False)  # random weights
        self.head = LaatHead(hidden, n_codes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        batch, total = input_ids.shape
        n_chunks = total // TRANSFORMER_CHUNK
        ids = input_ids.reshape(batch * n_chunks, TRANSFORMER_CHUNK)  # (B*n, 512)
        mask = attention_mask.reshape(batch * n_chunks, TRANSFORMER_CHUNK)  # (B*n, 512)
        states = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        states = states.reshape(batch, total, -1)  # (B, Tc, d)
        return self.head(states, attention_mask)  # (B, C)


# -- building the systems --------------------------------------------------------------------------


def make_session(graph_path: Path, threads: int) -> ort.InferenceSession:
    """A session with the options `model.runtime.OnnxPredictor` uses."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        str(graph_path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def run_session(session: ort.InferenceSession, input_ids: np.ndarray, mask: np.ndarray) -> Any:
    return session.run(list(GRAPH_OUTPUTS), {"input_ids": input_ids, "attention_mask": mask})


def torch_serving_forward(
    model: PlantClassifier, top_k: int, input_ids: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the exported graph computes (model.nn.export's serving graph), in eager PyTorch."""
    with torch.inference_mode():
        logits, attention = model(torch.from_numpy(input_ids), torch.from_numpy(mask))
        top_codes = logits.topk(top_k, dim=1).indices  # (B, K)
        rows = top_codes.unsqueeze(-1).expand(-1, -1, attention.size(2))  # (B, K, T)
        top_attention = attention.gather(1, rows)  # (B, K, T)
    return logits.numpy(), top_codes.numpy(), top_attention.numpy()


def load_torch_model(
    config: dict[str, Any], state_path: Path | None
) -> tuple[PlantClassifier, str]:
    """The bundle's network rebuilt from bundle.json's config; weights from `state_path`."""
    try:
        cfg = PlantConfig.from_dict(config)
        model = PlantClassifier(cfg)
    except (KeyError, TypeError, ValueError) as error:
        raise SystemExit(
            f"error: bundle.json's config does not rebuild a PlantClassifier ({error}); "
            "leave torch out with --systems predictor,session,transformer"
        ) from None
    if state_path is None:
        weights = (
            "random weights of the bundle's config (no --torch-state given; latency does not "
            "depend on weight values)"
        )
    else:
        # A stage-cache checkpoint (config and state) or a bare state dict.
        _, state = load_checkpoint(state_path, "cpu")
        model.load_state_dict(state)
        weights = f"trained state dict {state_path}"
    return model.eval(), weights


def transformer_batch(
    lengths: Sequence[int], vocab_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random ids for notes of the given token counts (capped at 3,072), right-padded to a
    multiple of 512: (B, Tc) ids and mask."""
    capped = [min(length, TRANSFORMER_MAX_TOKENS) for length in lengths]
    total = math.ceil(max(capped) / TRANSFORMER_CHUNK) * TRANSFORMER_CHUNK
    ids = np.ones((len(capped), total), dtype=np.int64)  # RoBERTa pad id 1
    mask = np.zeros((len(capped), total), dtype=np.int64)
    for row, length in enumerate(capped):
        ids[row, :length] = rng.integers(3, vocab_size, size=length)  # past <s>, <pad>, </s>
        mask[row, :length] = 1
    return ids, mask


def build_units(
    texts: Sequence[str],
    tokenizer: NoteTokenizer,
    max_tokens: int,
    batch_size: int,
    transformer_vocab: int,
    seed: int,
) -> list[Unit]:
    """Consecutive full batches of notes in corpus order (a short last batch is dropped)."""
    rng = np.random.default_rng(seed)
    units = []
    for first in range(0, len(texts) - batch_size + 1, batch_size):
        batch = list(texts[first : first + batch_size])
        notes = tokenizer.encode_batch(batch, max_tokens=max_tokens)
        input_ids, attention_mask = tokenizer.pad_batch(notes)
        t_ids, t_mask = transformer_batch([len(note) for note in notes], transformer_vocab, rng)
        units.append(Unit(batch, input_ids, attention_mask, t_ids, t_mask))
    return units


# -- timing ----------------------------------------------------------------------------------------


def time_units(
    systems: Sequence[System],
    units: Sequence[Unit],
    repeats: int,
    description: str,
) -> dict[str, list[float]]:
    """Per system, the median over `repeats` rounds of each unit's wall time (ms).

    Interleaved by rounds: in each round every system times each of its units once, systems in
    an order rotated from round to round, so a slow spell of the machine is shared rather than
    landing on one system. Systems switch only between blocks, each block opening with untimed
    warm-up calls: ONNX Runtime's and torch's worker threads spin for a while after a call, and on
    2 cores a switch at every call would charge one runtime for the other's spinning.
    """
    times: dict[str, list[list[float]]] = {
        system.name: [[] for _ in range(min(system.n_units, len(units)))] for system in systems
    }
    total = repeats * sum(len(per_unit) for per_unit in times.values())
    with progress_bar() as progress:
        task = progress.add_task(description, total=total, status="")
        for repeat in range(repeats):
            shift = repeat % len(systems)
            for system in [*systems[shift:], *systems[:shift]]:
                mine = units[: system.n_units]
                for unit in mine[: max(1, min(system.warmup, len(mine)))]:
                    system.run(unit)
                for index, unit in enumerate(mine):
                    started = time.perf_counter()
                    system.run(unit)
                    times[system.name][index].append((time.perf_counter() - started) * 1e3)
                    progress.update(task, advance=1, status=system.name)
    return {name: [float(np.median(runs)) for runs in per_unit] for name, per_unit in times.items()}


def linear_fit(lengths: Sequence[int], latencies_ms: Sequence[float]) -> tuple[float, float, float]:
    """Least squares ms = a + b * tokens: (ms per 1k tokens, intercept ms, R^2)."""
    x = np.asarray(lengths, dtype=np.float64)
    y = np.asarray(latencies_ms, dtype=np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(np.sum((y - (intercept + slope * x)) ** 2))
    spread = float(np.sum((y - y.mean()) ** 2))
    r_squared = 1.0 - residual / spread if spread > 0 else float("nan")
    return float(slope * 1000.0), float(intercept), r_squared


def token_stream(texts: Sequence[str], tokenizer: NoteTokenizer, length: int) -> np.ndarray:
    """Real notes' token ids, untruncated and concatenated (repeated if short) to `length`."""
    pieces: list[np.ndarray] = []
    have = 0
    while have < length:
        for text in texts:
            ids = tokenizer.encode(text).ids
            pieces.append(ids)
            have += len(ids)
            if have >= length:
                break
        if have == 0:
            raise SystemExit("error: the notes yield no tokens")
    return np.concatenate(pieces)[:length]


# -- the report ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="PLANT bundle directory")
    parser.add_argument(
        "--torch-state",
        type=Path,
        help="state dict of the same network (runs/<run>/classifier-all-<key>.pt); "
        "unset: random weights of the bundle's config",
    )
    parser.add_argument("--corpus", default="codiesp", help="corpus name (codiesp, jsonl, ...)")
    parser.add_argument(
        "--corpus-path", default=DEFAULT_CORPUS_PATH, help="relative to the current directory"
    )
    parser.add_argument("--split", default="dev", help="corpus split to read")
    parser.add_argument("--lang", default="en", help="CodiEsp language (en, es)")
    parser.add_argument("--codes", default="D", help="CodiEsp code set (D, P, DP)")
    parser.add_argument("--notes", type=int, help="time only the first N notes; unset: all")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads, ORT and torch")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per note or batch")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls opening each block")
    parser.add_argument("--batch-sizes", default="1,16", help="comma-separated")
    parser.add_argument("--top-k", type=int, default=10, help="codes the served path ranks")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {SYSTEMS}"
    )
    parser.add_argument(
        "--transformer-notes",
        type=int,
        default=32,
        help="notes the transformer times (it is ~100x slower); the other systems time all",
    )
    parser.add_argument("--transformer-layers", type=int, default=12, help="12: roberta-base")
    parser.add_argument("--transformer-hidden", type=int, default=768, help="768: roberta-base")
    parser.add_argument("--lengths", default="500,1000,3000,6000", help="synthetic note lengths")
    parser.add_argument("--length-repeats", type=int, default=7, help="timed runs per length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    args.system_list = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = sorted(set(args.system_list) - set(SYSTEMS))
    if unknown or not args.system_list:
        parser.error(f"--systems: unknown {unknown}; choose from {', '.join(SYSTEMS)}")
    try:
        args.batch_list = parse_int_list(args.batch_sizes)
        args.length_list = parse_int_list(args.lengths) if args.lengths else []
    except ValueError as error:
        parser.error(str(error))
    for name in ("threads", "repeats", "length_repeats", "top_k", "transformer_notes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    facts = machine_facts(["numpy", "onnxruntime", "torch", "transformers", "tokenizers"])
    busy = busy_warning()
    torch.set_num_threads(args.threads)
    # Only settable before torch's first parallel work; the default is fine otherwise.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)

    bundle = load_bundle(args.bundle)
    metadata = bundle.metadata
    n_codes = len(metadata.codes)
    top_k = min(args.top_k, n_codes)
    texts = load_notes(
        args.corpus,
        args.corpus_path,
        args.split,
        lang=args.lang,
        codes=args.codes,
        limit=args.notes,
    )
    # One graph call per batch, as for the session and torch (the predictor splits larger ones).
    predictor = OnnxPredictor(
        bundle.directory, threads=args.threads, batch_size=max(args.batch_list)
    )
    predictor.warm_up()
    tokenizer = predictor.tokenizer
    session = make_session(bundle.graph_path, args.threads)
    read_lengths = np.array([len(note) for note in predictor.tokenize(texts)])

    wanted = set(args.system_list)
    torch_model: PlantClassifier | None = None
    weights = "not run"
    if "torch" in wanted:
        torch_model, weights = load_torch_model(metadata.config, args.torch_state)
    reference: PlmIcdReference | None = None
    if "transformer" in wanted:
        reference = PlmIcdReference(n_codes, args.transformer_layers, args.transformer_hidden)
        reference.eval()
    transformer_vocab = reference.config.vocab_size if reference is not None else 50265

    # Same model? With trained weights, torch and ONNX Runtime must agree on a real note.
    agreement = "n/a"
    if torch_model is not None:
        ids, mask = tokenizer.pad_batch(predictor.tokenize(texts[:1]))
        onnx_logits = run_session(session, ids, mask)[0]
        torch_logits = torch_serving_forward(torch_model, metadata.top_k_export, ids, mask)[0]
        agreement = f"{float(np.abs(onnx_logits - torch_logits).max()):.2e}"

    def runner(name: str) -> Callable[[Unit], object]:
        if name == "predictor":
            return lambda unit: predictor.predict(unit.texts, top_k=top_k)
        if name == "session":
            return lambda unit: run_session(session, unit.input_ids, unit.attention_mask)
        if name == "torch":
            model = torch_model
            assert model is not None
            return lambda unit: torch_serving_forward(
                model, metadata.top_k_export, unit.input_ids, unit.attention_mask
            )
        ref = reference
        assert ref is not None

        def run_reference(unit: Unit) -> object:
            with torch.inference_mode():
                return ref(
                    torch.from_numpy(unit.transformer_ids), torch.from_numpy(unit.transformer_mask)
                ).numpy()

        return run_reference

    # -- real notes at each batch size ---------------------------------------------------------
    rows: list[list[str]] = []
    batch1_predictor_p50 = float("nan")
    for batch_size in args.batch_list:
        units = build_units(
            texts, tokenizer, metadata.max_tokens, batch_size, transformer_vocab, args.seed
        )
        if not units:
            print(f"skipping batch {batch_size}: fewer notes than that", file=sys.stderr)
            continue
        transformer_units = max(1, math.ceil(args.transformer_notes / batch_size))
        systems = [
            System(name, runner(name), len(units), args.warmup)
            if name != "transformer"
            else System(name, runner(name), transformer_units, 1)
            for name in SYSTEMS
            if name in wanted
        ]
        per_unit = time_units(
            systems, units, args.repeats, f"batch {batch_size} ({len(units)} calls)"
        )
        for system in systems:
            measured = per_unit[system.name]
            call = summarize(measured)
            note = summarize([value / batch_size for value in measured])
            ratio = "n/a"
            if "session" in per_unit:
                baseline = summarize(per_unit["session"][: len(measured)])
                ratio = f"{call.p50 / baseline.p50:.2f}x"
            rows.append(
                [
                    LABELS[system.name],
                    str(batch_size),
                    str(len(measured) * batch_size),
                    fmt_ms(call.p50),
                    fmt_ms(call.p95),
                    fmt_ms(note.p50, 2),
                    fmt_ms(note.p95, 2),
                    ratio,
                ]
            )
            if system.name == "predictor" and batch_size == 1:
                batch1_predictor_p50 = call.p50

    # -- latency against length ----------------------------------------------------------------
    length_rows: list[list[str]] = []
    fits: list[str] = []
    length_systems = [name for name in ("session", "torch") if name in wanted]
    if args.length_list and length_systems:
        stream = token_stream(texts, tokenizer, max(args.length_list))
        length_units = [
            Unit(
                [],
                stream[None, :length].copy(),  # (1, L)
                np.ones((1, length), dtype=np.int64),
                np.zeros((1, 0), dtype=np.int64),
                np.zeros((1, 0), dtype=np.int64),
            )
            for length in args.length_list
        ]
        systems = [System(name, runner(name), len(length_units), 1) for name in length_systems]
        per_length = time_units(systems, length_units, args.length_repeats, "note length")
        for index, length in enumerate(args.length_list):
            row = [f"{length:,}"]
            row += [fmt_ms(per_length[name][index]) for name in length_systems]
            if len(length_systems) == 2:
                row.append(f"{per_length['torch'][index] / per_length['session'][index]:.2f}x")
            length_rows.append(row)
        if len(args.length_list) >= 2:
            for name in length_systems:
                per_1k, intercept, r_squared = linear_fit(args.length_list, per_length[name])
                fits.append(
                    f"- {LABELS[name]}: {per_1k:.2f} ms per 1k tokens, intercept "
                    f"{intercept:.2f} ms, R^2 = {r_squared:.4f}"
                )

    # -- report --------------------------------------------------------------------------------
    encoder = metadata.config.get("encoder", {})
    lines = [
        "## Inference latency",
        "",
        "```",
        f"$ {command_line()}",
        "```",
        "",
        facts_list(
            [
                *facts,
                ("load average (1/5/15 min) at end", load_average()),
                (
                    "threads",
                    f"{args.threads} intra-op for ONNX Runtime (inter-op 1, sequential, as "
                    f"served) and for torch",
                ),
                (
                    "bundle",
                    f"{args.bundle} ({metadata.name} {metadata.version}; {n_codes} codes; "
                    f"encoder {encoder.get('kind', '?')} emb {encoder.get('emb_dim', '?')} hidden "
                    f"{encoder.get('hidden_dim', '?')} layers {encoder.get('n_layers', '?')}; "
                    f"max_tokens {metadata.max_tokens}; top K {metadata.top_k_export})",
                ),
                ("PyTorch weights", weights),
                ("max |logit| difference torch vs ONNX Runtime on note 1", agreement),
                (
                    "transformer reference",
                    f"RobertaModel({args.transformer_layers} layers, {args.transformer_hidden} "
                    "hidden; RobertaConfig() defaults otherwise, max_position_embeddings 514 as "
                    "roberta-base), random weights, nothing downloaded; each note as many random "
                    f"ids as the PLANT runtime reads, capped at {TRANSFORMER_MAX_TOKENS:,}, "
                    f"padded to {TRANSFORMER_CHUNK}-token chunks; LAAT head over {n_codes} codes",
                ),
                (
                    "notes",
                    f"{len(texts)} {args.corpus} {args.split} notes (lang {args.lang}, codes "
                    f"{args.codes}); tokens read per note p50 {np.median(read_lengths):.0f}, "
                    f"p95 {np.percentile(read_lengths, 95):.0f}, max {read_lengths.max()}",
                ),
            ]
        ),
        "",
        *([busy, ""] if busy else []),
        "### Per note, real notes",
        "",
        f"Batches are consecutive notes in corpus order (a short last batch is dropped). "
        f"{args.repeats} rounds; in each, every system times each of its calls once, systems "
        f"in rotated order, each block after {args.warmup} untimed warm-up calls (the "
        "transformer: 1). A call's time is its median over rounds; p50/p95 are over calls. "
        "The ratio compares p50 per call with the raw ONNX Runtime session on the same calls "
        "(the transformer times only the first notes).",
        "",
        markdown_table(
            [
                "system",
                "batch",
                "notes",
                "p50 ms/call",
                "p95 ms/call",
                "p50 ms/note",
                "p95 ms/note",
                "p50 vs ORT session",
            ],
            rows,
        ),
        "",
    ]
    if np.isfinite(batch1_predictor_p50):
        verdict = "met" if batch1_predictor_p50 <= TARGET_P50_MS else "NOT met"
        lines += [
            f"Target p50 <= {TARGET_P50_MS:.0f} ms per note at batch 1 on {args.threads} threads "
            f"(served path, tokenisation included): {batch1_predictor_p50:.1f} ms, **{verdict}**.",
            "",
        ]
    if length_rows:
        headers = ["tokens", *[LABELS[name] for name in length_systems]]
        if len(length_systems) == 2:
            headers.append("PyTorch / ORT")
        lines += [
            "### Latency against note length (batch 1, ms)",
            "",
            "Synthetic notes of real CodiEsp token ids repeated to length, given to the graph "
            f"directly (no max_tokens truncation); median of {args.length_repeats} runs each.",
            "",
            markdown_table(headers, length_rows),
            "",
            "Linear fit, ms = intercept + slope x tokens:",
            "",
            *fits,
            "",
        ]
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
