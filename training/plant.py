"""The PLANT training pipeline, stage by stage, each stage cached so a re-run skips finished work.

tokenizer -> language-model pretraining (train + background notes, never dev/test) -> mutual
information (train split only) -> L2R (LambdaRank) -> classifier fine-tuning with staged
unfreezing (dev split for selection) -> ONNX export -> thresholds tuned on dev through the ONNX
runtime -> dev evaluation through the same runtime -> bundle.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from model.bundle import BundleMetadata, package_versions, sha256_file, write_bundle
from model.metadata import FusionInfo, TrainingInfo
from model.nn.export import export_onnx
from model.nn.network import (
    AWDLSTMLanguageModel,
    PlantClassifier,
    PlantConfig,
    build_config,
    position_limit,
)
from model.thresholds import DEFAULT_MIN_POSITIVES, Thresholds, ThresholdsInfo
from model.tokenizer import NoteTokenizer
from training.corpora.base import Document
from training.datasets import CorpusSpec, code_counts, code_entries, fingerprint, label_order
from training.distributed import SINGLE, DistContext, barrier
from training.evaluate import evaluate_predictor, gold_matrix, json_safe, known_gold_matrix
from training.finetune import FinetuneConfig, StageConfig, run_stage
from training.fusion import FittedFusion, FusionSettings, fit_fusion, fusion_documents
from training.l2r import L2RConfig, train_l2r
from training.lm import LMConfig, pretrain_language_model
from training.metrics import MetricReport
from training.mutual_info import label_matrix, normalized_mutual_information, presence_matrix
from training.planting import evidence_counts, evidence_relevance
from training.thresholds import tune_thresholds

Progress = Callable[[str, int, int, dict[str, float]], None]


@dataclass
class PlantPreset:
    """Everything besides the network shape that a preset fixes."""

    vocab_size: int
    max_tokens: int
    lm: LMConfig
    l2r: L2RConfig
    finetune: FinetuneConfig
    network: str = "demo"  # a `model.nn.network.PRESETS` name
    network_overrides: dict[str, Any] = field(default_factory=dict)
    # The lexicon + neighbours + combiner fused with the network (training/fusion.py).
    fusion: FusionSettings = field(default_factory=FusionSettings)


PRESET_NAMES = ("tiny", "demo", "paper")


def preset(name: str, seed: int) -> PlantPreset:
    if name == "tiny":
        # Seconds, for tests and smoke runs on synthetic corpora; not a useful model.
        return PlantPreset(
            vocab_size=400,
            max_tokens=256,
            lm=LMConfig(epochs=8, bptt=16, batch_size=4, lr=1e-2, seed=seed),
            l2r=L2RConfig(max_steps=30, codes_per_batch=16, seed=seed),
            finetune=FinetuneConfig(
                stages=[
                    # A tiny LM gives little to a frozen encoder: most learning is in "all", with
                    # one learning rate for every layer (the embedding must still learn).
                    StageConfig("decoder", "decoder", epochs=2, lr=1e-2),
                    StageConfig("top", "top", epochs=1, lr=1e-2),
                    StageConfig("all", "all", epochs=30, lr=1e-2),
                ],
                batch_size=8,
                max_tokens=256,
                layer_lr_decay=1.0,
                patience=20,
                seed=seed,
            ),
            network="demo",
            fusion=FusionSettings(
                folds=2, catalogue=False, rounds=20, min_rows_in_leaf=2, seed=seed
            ),
            network_overrides={
                "emb_dim": 16,
                "hidden_dim": 24,
                "chunk_len": 32,
                "l2r_dim": 8,
                "laat_dim": 16,
                "inattention_k": 8,
                "window": 64,
            },
        )
    if name == "demo":
        # Sized for the whole CodiEsp pipeline in under 20 minutes on 2 CPU cores.
        return PlantPreset(
            vocab_size=8000,
            max_tokens=2048,
            # Many small steps: at batch 32 x 64 tokens the LM stayed at unigram perplexity
            # (~840) within budget; 8 x 32 reaches ~170 on the same tokens (docs/BENCHMARKS.md).
            lm=LMConfig(epochs=1, bptt=32, batch_size=8, lr=3e-3, seed=seed),
            l2r=L2RConfig(seed=seed),
            finetune=FinetuneConfig(
                stages=[
                    StageConfig("decoder", "decoder", epochs=6, lr=3e-3),
                    StageConfig("top", "top", epochs=2, lr=1e-3),
                    StageConfig("all", "all", epochs=2, lr=5e-4),
                ],
                batch_size=8,
                max_tokens=2048,
                seed=seed,
            ),
            network="demo",
            fusion=FusionSettings(seed=seed),
            # One LM epoch is short: light dropout lets it get past unigram statistics.
            network_overrides={
                "embedding_dropout": 0.0,
                "input_dropout": 0.1,
                "hidden_dropout": 0.05,
                "weight_dropout": 0.1,
                "output_dropout": 0.05,
            },
        )
    if name == "paper":
        return PlantPreset(
            vocab_size=30000,
            max_tokens=4096,
            lm=LMConfig(epochs=10, bptt=72, batch_size=64, lr=2e-3, seed=seed),
            l2r=L2RConfig(seed=seed),
            finetune=FinetuneConfig(
                stages=[
                    StageConfig("decoder", "decoder", epochs=20, lr=3e-3),
                    StageConfig("top", "top", epochs=10, lr=1e-3),
                    StageConfig("all", "all", epochs=20, lr=5e-4),
                ],
                batch_size=16,
                max_tokens=4096,
                patience=4,
                seed=seed,
            ),
            network="paper",
            fusion=FusionSettings(seed=seed),
        )
    raise ValueError(f"unknown preset {name!r}: use one of {', '.join(PRESET_NAMES)}")


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


@dataclass
class TrainResult:
    bundle_dir: Path
    dev_report: MetricReport
    stage_seconds: dict[str, float]
    reports: dict[str, Any]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


# Part of every stage key: bump it when a change to the network or training code makes cached
# stage outputs (weights, MI, L2R factors) stale, so a re-run recomputes instead of reusing them.
CACHE_VERSION = 1


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageCache:
    """Files under `work_dir` named by a hash of everything the stage's output depends on."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)

    def path(self, stage: str, key: str, suffix: str) -> Path:
        return self.work_dir / f"{stage}-{key}{suffix}"

    def report(self, stage: str, key: str) -> dict[str, Any] | None:
        path = self.path(stage, key, ".json")
        return json.loads(path.read_text()) if path.is_file() else None

    def save_report(self, stage: str, key: str, report: dict[str, Any]) -> None:
        path = self.path(stage, key, ".json")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2, default=float))
        tmp.replace(path)


def _transformer_overrides(encoder_dir: Path, tokenizer: NoteTokenizer) -> dict[str, Any]:
    """Network settings for a Hugging Face backbone: its vocabulary, pad id and chunk length."""
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(encoder_dir, local_files_only=True)
    return {
        "kind": "transformer",
        "hf_path": str(encoder_dir.resolve()),
        "vocab_size": max(tokenizer.vocab_size, int(hf_config.vocab_size)),
        "pad_id": tokenizer.pad_id,
        "chunk_len": min(512, position_limit(hf_config)),
        "emb_dim": int(hf_config.hidden_size),
    }


def _silent(stage: str, done: int, total: int, status: dict[str, float]) -> None:
    del stage, done, total, status


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Write then rename, so a crash never leaves a truncated cache entry under its final name."""
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def _tokenize(tokenizer: NoteTokenizer, documents: Sequence[Document]) -> list[np.ndarray]:
    return [note.ids for note in tokenizer.encode_batch([doc.text for doc in documents])]


def _untuned_metadata(
    options: TrainOptions,
    settings: PlantPreset,
    network_config: PlantConfig,
    train_docs: Sequence[Document],
) -> BundleMetadata:
    """bundle.json for the network alone, before thresholds are tuned and dev metrics known."""
    spec = options.spec
    codes = label_order(train_docs)
    counts = code_counts(train_docs)
    now = datetime.now(UTC)
    return BundleMetadata(
        name=f"plant-{spec.name}-{spec.codes.lower()}-{spec.lang}"
        + ("" if options.plant else "-lant"),
        version=now.strftime("%Y%m%d%H%M%S"),
        created_at=now.isoformat(),
        config=network_config.to_dict(),
        codes=code_entries(codes, spec.code_systems),
        code_system=spec.code_system,
        thresholds=_untuned(len(codes)),
        max_tokens=settings.max_tokens,
        top_k_export=network_config.top_k_export,
        train_code_counts=[counts[code] for code in codes],
        corpus=spec.corpus_info(options.train_split, train_docs),
        training={"preset": options.preset, "plant": options.plant, "seed": options.seed},
        package_versions=package_versions(
            ["torch", "onnx", "onnxruntime", "tokenizers", "numpy", "simple-icd-10-cm"]
        ),
    )


def _untuned(n_codes: int) -> ThresholdsInfo:
    """Thresholds that only let the bundle load for scoring; tuning replaces them."""
    return Thresholds.uniform(n_codes, min_positives=DEFAULT_MIN_POSITIVES).to_json()


def _with_fusion(metadata: BundleMetadata, fused: FittedFusion, spec: CorpusSpec) -> BundleMetadata:
    """Extend bundle.json's label space with the codes only the fusion proposes."""
    codes = metadata.codes + code_entries(fused.extra_codes, spec.code_systems)
    return replace(
        metadata,
        network_codes=len(metadata.codes),
        codes=codes,
        train_code_counts=metadata.train_code_counts + [0] * len(fused.extra_codes),
        thresholds=_untuned(len(codes)),
        fusion=cast(FusionInfo, fused.info),
    )


def run_training(
    options: TrainOptions, progress: Progress | None = None, ctx: DistContext = SINGLE
) -> TrainResult | None:
    """Run every stage (re-using cached ones) and write the bundle to `options.out`.

    Under torchrun (`ctx.enabled`) the cheap deterministic stages (tokenizer, MI, L2R) run on rank
    0 while the others wait; LM pretraining and fine-tuning run data-parallel on every rank; rank 0
    alone exports, evaluates and writes the bundle. Other ranks return None.
    """
    spec = options.spec
    settings = preset(options.preset, options.seed)
    work_dir = options.work_dir or Path("runs") / (
        f"{spec.name}-{spec.codes.lower()}-{spec.lang}-{options.preset}-seed{options.seed}"
    )
    cache = StageCache(work_dir)
    seconds: dict[str, float] = {}
    reports: dict[str, Any] = {}
    notify = progress if progress is not None and ctx.is_main else _silent

    train_docs = spec.load(options.train_split)
    dev_docs = spec.load(options.dev_split)
    unlabelled = list(train_docs)
    if options.background and spec.name == "codiesp":
        unlabelled += spec.load("background")
    codes = label_order(train_docs)
    # Training notes with evidence spans in their own language (projected for CodiEsp English).
    evidence_docs = (
        fusion_documents(train_docs, spec) if options.evidence or options.fusion else train_docs
    )
    corpus_key = _key(CACHE_VERSION, fingerprint(train_docs), fingerprint(unlabelled), options.seed)

    # 1. Tokenizer, trained on unlabelled training text (train + background), or the backbone's.
    started = time.perf_counter()
    if options.encoder_dir is None:
        tok_key = _key(corpus_key, settings.vocab_size)
    else:
        tok_key = _key("hf", sha256_file(options.encoder_dir / "tokenizer.json"))
    tok_path = cache.path("tokenizer", tok_key, ".json")
    if ctx.is_main and not tok_path.is_file():
        if options.encoder_dir is None:
            texts = [doc.text for doc in unlabelled]
            NoteTokenizer.train(texts, settings.vocab_size).save(tok_path)
        else:
            NoteTokenizer.from_huggingface(options.encoder_dir).save(tok_path)
    barrier(ctx)
    tokenizer = NoteTokenizer.load(tok_path)
    seconds["tokenizer"] = time.perf_counter() - started

    seed_everything(options.seed)
    overrides = dict(settings.network_overrides)
    if options.encoder_dir is not None:
        overrides |= _transformer_overrides(options.encoder_dir, tokenizer)
    network_config = build_config(
        settings.network,
        vocab_size=overrides.pop("vocab_size", tokenizer.vocab_size),
        n_codes=len(codes),
        top_k_export=min(options.top_k_export, len(codes)),
        branches=("laat", "planted", "static") if options.plant else ("laat", "planted"),
        **overrides,
    )
    vocab_size = network_config.encoder.vocab_size
    train_notes = _tokenize(tokenizer, train_docs)
    dev_notes = _tokenize(tokenizer, dev_docs)

    # 2. Language-model pretraining of the encoder (data-parallel under torchrun).
    started = time.perf_counter()
    lm_key = _key(tok_key, asdict(network_config.encoder), asdict(settings.lm))
    lm_path = cache.path("lm", lm_key, ".pt")
    lm_report = cache.report("lm", lm_key)
    barrier(ctx)  # every rank has looked at the cache before rank 0 may write to it
    if network_config.encoder.kind == "transformer":
        lm_report = {"skipped": f"pretrained transformers backbone {options.encoder_dir}"}
    elif lm_report is None or not lm_path.is_file():
        seed_everything(options.seed)
        language_model = AWDLSTMLanguageModel(network_config.encoder).to(ctx.device)
        unlabelled_notes = train_notes + _tokenize(tokenizer, unlabelled[len(train_docs) :])
        report = pretrain_language_model(
            language_model,
            unlabelled_notes,
            tokenizer.eos_id,
            settings.lm,
            progress=lambda done, total, loss: notify("lm", done, total, {"loss": loss}),
            ctx=ctx,
        )
        lm_report = asdict(report)
        if ctx.is_main:
            torch.save(language_model.encoder.cpu().state_dict(), lm_path)
            cache.save_report("lm", lm_key, lm_report)
    barrier(ctx)
    reports["lm"] = lm_report
    seconds["lm"] = time.perf_counter() - started

    # 3. Mutual information, training split only.
    started = time.perf_counter()
    mi_key = _key(tok_key, codes)
    mi_path = cache.path("mi", mi_key, ".npy")
    if ctx.is_main and not mi_path.is_file():
        code_index = {code: col for col, code in enumerate(codes)}
        presence = presence_matrix(train_notes, vocab_size)
        labels = label_matrix(
            [[code_index[c] for c in doc.codes] for doc in train_docs], len(codes)
        )
        _save_npy(mi_path, normalized_mutual_information(presence, labels))
    barrier(ctx)
    mutual_information = np.load(mi_path)
    seconds["mi"] = time.perf_counter() - started

    # 4. L2R: rank tokens per code by the coders' evidence (where the corpus has spans) and MI.
    started = time.perf_counter()
    relevance, planting = mutual_information, "mi"
    if options.plant and options.evidence and any(doc.spans for doc in evidence_docs):
        marked = evidence_counts(evidence_docs, tokenizer, codes, settings.max_tokens)
        relevance = evidence_relevance(mutual_information, marked)
        planting = hashlib.sha256(marked.tobytes()).hexdigest()[:16]
    # The planted branch takes the L2R factors as they are: their width is the network's.
    l2r_config = replace(settings.l2r, dim=network_config.l2r_dim)
    l2r_key = _key(mi_key, asdict(l2r_config), planting)
    l2r_path = cache.path("l2r", l2r_key, ".pt")
    if ctx.is_main and (cache.report("l2r", l2r_key) is None or not l2r_path.is_file()):
        l2r_model, report_l2r = train_l2r(
            relevance,
            l2r_config,
            progress=lambda done, total, loss: notify("l2r", done, total, {"loss": loss}),
        )
        torch.save(l2r_model.state_dict(), l2r_path)
        cache.save_report("l2r", l2r_key, asdict(report_l2r) | {"planting": planting})
    barrier(ctx)
    reports["l2r"] = cache.report("l2r", l2r_key)
    seconds["l2r"] = time.perf_counter() - started

    # 5. Classifier: plant, then fine-tune stage by stage.
    seed_everything(options.seed)
    classifier = PlantClassifier(network_config)
    if network_config.encoder.kind == "awd_lstm":
        classifier.encoder.load_state_dict(torch.load(lm_path, weights_only=True))
    if options.plant:
        l2r_state = torch.load(l2r_path, weights_only=True)
        classifier.plant(
            l2r_state["token_factors"],
            l2r_state["token_bias"],
            l2r_state["code_factors"],
            l2r_state["code_bias"],
        )
        classifier.set_mutual_information(torch.from_numpy(mutual_information))
    train_labels = gold_matrix(train_docs, codes)
    classifier.set_code_priors(train_labels.mean(axis=0))
    classifier.to(ctx.device)
    dev_labels = known_gold_matrix(dev_docs, codes)
    stage_key = _key(lm_key, l2r_key if options.plant else "lant", asdict(network_config))
    stage_reports = []
    for stage in settings.finetune.stages:
        started = time.perf_counter()
        stage_key = _key(stage_key, asdict(stage), asdict(settings.finetune), ctx.world_size)
        stage_path = cache.path(f"classifier-{stage.name}", stage_key, ".pt")
        stage_report = cache.report(f"classifier-{stage.name}", stage_key)
        barrier(ctx)
        if stage_report is None or not stage_path.is_file():
            report_stage = run_stage(
                classifier,
                stage,
                (train_notes, train_labels),
                (dev_notes, dev_labels),
                settings.finetune,
                progress=notify,
                ctx=ctx,
            )
            stage_report = asdict(report_stage)
            if ctx.is_main:
                torch.save(classifier.state_dict(), stage_path)
                cache.save_report(f"classifier-{stage.name}", stage_key, stage_report)
        else:
            state = torch.load(stage_path, weights_only=True, map_location=ctx.device)
            classifier.load_state_dict(state)
        barrier(ctx)
        stage_reports.append(stage_report)
        seconds[f"classifier/{stage.name}"] = time.perf_counter() - started
    reports["classifier"] = stage_reports
    if not ctx.is_main:
        return None
    classifier.cpu()

    # 6. Export, tune thresholds through the runtime that serves, evaluate on dev.
    started = time.perf_counter()
    options.out.mkdir(parents=True, exist_ok=True)
    graph_path = options.out / "model.onnx"
    export_onnx(classifier.eval(), graph_path, top_k=network_config.top_k_export)
    shutil.copyfile(tok_path, options.out / "tokenizer.json")
    metadata = _untuned_metadata(options, settings, network_config, train_docs)
    seconds["export"] = time.perf_counter() - started

    fusion_files: dict[str, Path] = {}
    if options.fusion:
        started = time.perf_counter()
        fused = fit_fusion(evidence_docs, spec, settings.fusion, options.out, codes)
        metadata = _with_fusion(metadata, fused, spec)
        fusion_files = fused.files
        reports["fusion"] = fused.info["report"]
        seconds["fusion"] = time.perf_counter() - started

    def write(metadata: BundleMetadata) -> BundleMetadata:
        tokenizer_path = options.out / "tokenizer.json"
        return write_bundle(
            options.out, metadata, graph_path, tokenizer_path, fusion_files
        ).metadata

    from model.runtime import OnnxPredictor

    started = time.perf_counter()
    # Scores do not depend on thresholds: score dev once, tune, then evaluate the tuned bundle
    # as it is served, read back through the checked loader.
    write(metadata)
    scorer = OnnxPredictor(options.out)
    dev_scores = scorer.scores([doc.text for doc in dev_docs])
    tuned = tune_thresholds(known_gold_matrix(dev_docs, list(scorer.codes)), dev_scores)
    write(replace(metadata, thresholds=tuned.to_json()))
    predictor = OnnxPredictor(options.out)
    evaluation = evaluate_predictor(predictor, dev_docs, scores=dev_scores)
    seconds["thresholds+evaluate"] = time.perf_counter() - started
    training_info = predictor.metadata.training | {
        "seconds": {stage: round(value, 1) for stage, value in seconds.items()},
        "lm": reports["lm"],
        "l2r": reports["l2r"],
        "classifier": stage_reports,
        **({"fusion": reports["fusion"]} if "fusion" in reports else {}),
    }
    write(
        replace(
            predictor.metadata,
            dev_metrics=json_safe(evaluation.report.as_dict()),
            training=cast(TrainingInfo, training_info),
        )
    )
    return TrainResult(options.out, evaluation.report, seconds, reports)
