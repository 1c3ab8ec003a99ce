"""The PLANT training pipeline: a list of named stages over the stage cache, so a re-run skips
finished work.

tokenizer -> language-model pretraining (train + background notes, never dev/test) -> mutual
information (train split only) -> L2R (LambdaRank) -> classifier fine-tuning with staged
unfreezing (dev split for selection) -> ONNX export -> fusion (lexicon, neighbours, combiner) ->
thresholds tuned on dev through the ONNX runtime, dev evaluation through the same runtime ->
bundle. The stages live in training/stages.py (network) and training/bundling.py (bundle).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from training.bundling import ExportGraph, Fuse, TuneAndEvaluate, write_training_record
from training.datasets import CorpusSpec, fingerprint, label_order
from training.distributed import SINGLE, DistContext
from training.final import read_final_reference
from training.fusion import fusion_documents
from training.metric_report import MetricReport
from training.presets import Preset, preset
from training.progress import Notify, silent
from training.stage_cache import StageCache, stage_key
from training.stages import (
    FineTune,
    MutualInformation,
    PretrainLanguageModel,
    RankTokens,
    RunState,
    Stage,
    TrainTokenizer,
)

# The pipeline, in order. Each stage reads what the ones before it left in the RunState.
NETWORK_STAGES: tuple[Stage, ...] = (
    TrainTokenizer(),
    PretrainLanguageModel(),
    MutualInformation(),
    RankTokens(),
    FineTune(),
)
# Rank 0 alone turns the network into the bundle.
BUNDLE_STAGES: tuple[Stage, ...] = (ExportGraph(), Fuse(), TuneAndEvaluate())


@dataclass
class TrainOptions:
    spec: CorpusSpec
    out: Path
    preset: str = "demo"
    plant: bool = True
    seed: int = 13
    work_dir: Path | None = None
    train_split: str = "train"
    dev_split: str = "dev"
    background: bool = True  # also pretrain the LM on CodiEsp's unlabelled background split
    top_k_export: int = 50
    # A local Hugging Face encoder directory (AutoModel + tokenizer.json): used instead of the
    # AWD-LSTM, with its own tokenizer; it is already pretrained, so the LM stage is skipped.
    encoder_dir: Path | None = None
    fusion: bool = True  # fuse the network with the lexicon and neighbours (False: network alone)
    evidence: bool = True  # plant from the coders' evidence spans where the corpus has them
    # A train-only bundle of the same preset and seed: refit on train + dev with the epoch counts
    # it selected on dev and the thresholds it tuned there (`plant-icd train --final`).
    final_from: Path | None = None
    attention_weight: float | None = None  # overrides the preset's attention-loss weight


@dataclass
class TrainResult:
    bundle_dir: Path
    dev_report: MetricReport | None  # None for a final refit: dev is training data there
    stage_seconds: dict[str, float]
    reports: dict[str, Any]


def start_run(options: TrainOptions, notify: Notify, ctx: DistContext) -> RunState:
    """Read the corpus and set up the run every stage shares."""
    spec = options.spec
    work_dir = options.work_dir or Path("runs") / (
        f"{spec.name}-{spec.codes.lower()}-{spec.lang}-{options.preset}-seed{options.seed}"
    )
    train_docs = spec.load(options.train_split)
    dev_docs = spec.load(options.dev_split)
    final = read_final_reference(options.final_from) if options.final_from else None
    if final is not None:
        train_docs = train_docs + dev_docs  # learn from every labelled note
    unlabelled = list(train_docs)
    if options.background and spec.name == "codiesp":
        unlabelled += spec.load("background")
    # Training notes with evidence spans in their own language (projected for CodiEsp English).
    evidence_docs = (
        fusion_documents(train_docs, spec) if options.evidence or options.fusion else train_docs
    )
    return RunState(
        spec=spec,
        out=options.out,
        preset_name=options.preset,
        preset=with_attention_weight(preset(options.preset), options.attention_weight),
        seed=options.seed,
        plant=options.plant,
        fusion=options.fusion,
        evidence=options.evidence,
        encoder_dir=options.encoder_dir,
        top_k_export=options.top_k_export,
        train_split=options.train_split,
        cache=StageCache(work_dir),
        ctx=ctx,
        notify=notify,
        train_docs=train_docs,
        dev_docs=dev_docs,
        unlabelled=unlabelled,
        evidence_docs=list(evidence_docs),
        codes=label_order(train_docs),
        corpus_key=stage_key(fingerprint(train_docs), fingerprint(unlabelled), options.seed),
        final=final,
    )


def with_attention_weight(chosen: Preset, weight: float | None) -> Preset:
    """The preset, with its attention-loss weight replaced when `weight` is given."""
    if weight is None:
        return chosen
    if not weight >= 0:
        raise ValueError(f"the attention weight must be 0 or more, got {weight}")
    return replace(chosen, finetune=replace(chosen.finetune, attention_weight=weight))


def run_stages(state: RunState, stages: tuple[Stage, ...]) -> None:
    """Run `stages` in order, timing each (fine-tuning times its own steps)."""
    for stage in stages:
        started = time.perf_counter()
        stage.run(state)
        if stage.name != FineTune.name:
            state.seconds[stage.name] = time.perf_counter() - started


def run_training(
    options: TrainOptions, progress: Notify | None = None, ctx: DistContext = SINGLE
) -> TrainResult | None:
    """Run every stage (re-using cached ones) and write the bundle to `options.out`.

    Under torchrun (`ctx.enabled`) every rank runs the network stages (see training/stages.py);
    rank 0 alone exports, evaluates and writes the bundle. Other ranks return None.
    """
    notify = progress if progress is not None and ctx.is_main else silent
    state = start_run(options, notify, ctx)
    run_stages(state, NETWORK_STAGES)
    if not ctx.is_main:
        return None
    run_stages(state, BUNDLE_STAGES)
    write_training_record(state)
    report = None if state.evaluation is None else state.evaluation.report
    return TrainResult(options.out, report, state.seconds, state.reports)
