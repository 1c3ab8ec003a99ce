"""The stages that turn the trained network into a bundle: ONNX export, the fused lexicon /
neighbours / combiner, and thresholds tuned on dev through the runtime that serves, then the dev
evaluation of the bundle exactly as it is served. Rank 0 alone runs them.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import torch

from model.bundle import BundleMetadata, package_versions, write_bundle
from model.metadata import CorpusInfo, FusionInfo, ShortlistInfo, TrainingInfo
from model.nn.export import export_onnx
from model.thresholds import DEFAULT_MIN_POSITIVES, Thresholds, ThresholdsInfo
from training.datasets import CorpusSpec, code_counts, code_entries
from training.evaluate import evaluate_predictor, json_safe, known_gold_matrix
from training.final import FinalReference
from training.fold_networks import fold_network_logits
from training.fusion import FittedFusion, fit_fusion
from training.stages import RunState
from training.thresholds import tune_thresholds

GRAPH = "model.onnx"
TOKENIZER = "tokenizer.json"
# The libraries whose versions a bundle records (what produced and what serves it).
RECORDED_PACKAGES = ("torch", "onnx", "onnxruntime", "tokenizers", "numpy", "simple-icd-10-cm")


def untuned_metadata(state: RunState) -> BundleMetadata:
    """bundle.json for the network alone, before thresholds are tuned and dev metrics known."""
    spec, codes = state.spec, state.codes
    counts = code_counts(state.train_docs)
    now = datetime.now(UTC)
    return BundleMetadata(
        name=f"plant-{spec.name}-{spec.codes.lower()}-{spec.lang}{'' if state.plant else '-lant'}",
        version=now.strftime("%Y%m%d%H%M%S"),
        created_at=now.isoformat(),
        config=state.config.to_dict(),
        codes=code_entries(codes, spec.code_systems),
        code_system=spec.code_system,
        thresholds=untuned(len(codes)),
        max_tokens=state.preset.max_tokens,
        top_k_export=state.config.top_k_export,
        train_code_counts=[counts[code] for code in codes],
        corpus=spec.corpus_info(state.train_split, state.train_docs),
        training={
            "preset": state.preset_name,
            "plant": state.plant,
            "seed": state.seed,
            "attention_weight": state.preset.finetune.attention_weight,
        },
        package_versions=package_versions(RECORDED_PACKAGES),
        shortlist=shortlist_info(state) if state.config.first_stage else None,
    )


def shortlist_info(state: RunState) -> ShortlistInfo:
    """The bundle's two-stage decoding settings, from the preset and the training notes."""
    settings = state.preset.shortlist
    return {
        "size": settings.size,
        "min_train_notes": settings.min_train_notes(len(state.train_docs)),
    }


def untuned(n_codes: int) -> ThresholdsInfo:
    """Thresholds that only let the bundle load for scoring; tuning replaces them."""
    return Thresholds.uniform(n_codes, min_positives=DEFAULT_MIN_POSITIVES).to_json()


def with_fusion(metadata: BundleMetadata, fused: FittedFusion, spec: CorpusSpec) -> BundleMetadata:
    """Extend bundle.json's label space with the codes only the fusion proposes."""
    codes = metadata.codes + code_entries(fused.extra_codes, spec.code_systems)
    return replace(
        metadata,
        network_codes=len(metadata.codes),
        codes=codes,
        train_code_counts=metadata.train_code_counts + [0] * len(fused.extra_codes),
        thresholds=untuned(len(codes)),
        fusion=cast(FusionInfo, fused.info),
    )


class ExportGraph:
    """The fine-tuned classifier as the ONNX graph the runtime serves, beside its tokenizer."""

    name = "export"
    code = ("model.nn.export",)

    def run(self, state: RunState) -> None:
        assert state.classifier is not None and state.tokenizer_path is not None
        state.out.mkdir(parents=True, exist_ok=True)
        classifier = state.classifier.cpu().eval()
        export_onnx(classifier, state.out / GRAPH, top_k=state.config.top_k_export)
        shutil.copyfile(state.tokenizer_path, state.out / TOKENIZER)
        state.metadata = untuned_metadata(state)


class Fuse:
    """Lexicon, neighbours and the LightGBM combiner fitted out of fold (training/fusion.py)."""

    name = "fusion"
    code = ("training.fusion",)

    def run(self, state: RunState) -> None:
        if not state.fusion:
            return
        assert state.metadata is not None, "the export stage has not run"
        settings = state.preset.fusion
        fused = fit_fusion(
            state.evidence_docs,
            state.spec,
            settings,
            state.out,
            state.codes,
            seed=state.seed,
            network_logits=fold_network_logits(state) if settings.network else None,
        )
        state.metadata = with_fusion(state.metadata, fused, state.spec)
        state.fusion_files = dict(fused.files)
        state.reports[self.name] = fused.info["report"]


class TuneAndEvaluate:
    """Dev scores through the runtime that serves, thresholds tuned on them, then the bundle
    written with them and evaluated as served (read back through the checked loader)."""

    name = "thresholds+evaluate"
    code = ("training.thresholds", "training.evaluate")

    def run(self, state: RunState) -> None:
        from model.runtime import OnnxPredictor

        assert state.metadata is not None, "the export stage has not run"
        self._write(state, state.metadata)
        if state.final is not None:
            self._carry_selections(state, state.final, OnnxPredictor(state.out).codes)
            return
        # As many ONNX Runtime threads as torch has (OMP_NUM_THREADS where set), so training
        # runs side by side do not each start one thread per core.
        scorer = OnnxPredictor(state.out, threads=torch.get_num_threads())
        # Scores do not depend on thresholds: dev is scored once, for tuning and evaluation.
        dev_scores = scorer.scores([doc.text for doc in state.dev_docs])
        tuned = tune_thresholds(known_gold_matrix(state.dev_docs, list(scorer.codes)), dev_scores)
        self._write(state, replace(state.metadata, thresholds=tuned.to_json()))
        predictor = OnnxPredictor(state.out, threads=torch.get_num_threads())
        state.evaluation = evaluate_predictor(predictor, state.dev_docs, scores=dev_scores)
        state.metadata = replace(
            predictor.metadata, dev_metrics=json_safe(state.evaluation.report.as_dict())
        )

    def _carry_selections(
        self, state: RunState, final: FinalReference, codes: Sequence[str]
    ) -> None:
        """A final refit: dev is training data, so its thresholds and numbers come from the
        train-only run, and the bundle says so."""
        assert state.metadata is not None
        training: dict[str, Any] = {
            **state.metadata.training,
            "final": final.record(len(state.train_docs)),
        }
        corpus: dict[str, Any] = {**state.metadata.corpus, "split": f"{state.train_split}+dev"}
        state.metadata = replace(
            state.metadata,
            thresholds=final.thresholds_for(codes).to_json(),
            training=cast(TrainingInfo, training),
            corpus=cast(CorpusInfo, corpus),
            dev_metrics={},
        )
        self._write(state, state.metadata)

    @staticmethod
    def _write(state: RunState, metadata: BundleMetadata) -> None:
        graph, tokenizer = state.out / GRAPH, state.out / TOKENIZER
        write_bundle(state.out, metadata, graph, tokenizer, state.fusion_files)


def write_training_record(state: RunState) -> None:
    """The final bundle.json: seconds per stage and every stage's report under `training`."""
    assert state.metadata is not None
    reports: dict[str, Any] = {
        name: state.reports[name]
        for name in ("lm", "l2r", "classifier", "fusion")
        if name in state.reports
    }
    seconds = {stage: round(value, 1) for stage, value in state.seconds.items()}
    record: dict[str, Any] = {**state.metadata.training, "seconds": seconds, **reports}
    state.metadata = replace(state.metadata, training=cast(TrainingInfo, record))
    TuneAndEvaluate._write(state, state.metadata)
