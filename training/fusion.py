"""Fitting the fusion combiner on out-of-fold features and exporting it as an ONNX tree ensemble.

Every training row is built by branches (lexicon, neighbours, network) that never saw its note:
the notes are split into folds and each fold's rows come from branches built on the other folds.
The combiner is a LightGBM binary classifier over `model.fusion.FEATURES`; its margin's sigmoid is
the fused score. The served branches are then rebuilt on all training notes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from model.codes import CodeSystem
from model.context import LANGUAGES, ContextRules
from model.fusion import (
    COMBINER_FILE,
    COMBINER_INPUT,
    COMBINER_OUTPUT,
    FEATURES,
    LEXICON_FILE,
    NEIGHBOURS_FILE,
    FeatureBuilder,
)
from model.neighbours import NeighbourIndex
from training.corpora.base import Document
from training.datasets import CorpusSpec, code_counts
from training.lexicon import Phrases, build_lexicon, catalogue_phrases, icd10cm_descriptions
from training.projection import WordTranslator, fit_translator, project_spans

# (documents the branches are built on, documents to score) -> per document, code -> logit
NetworkLogits = Callable[[Sequence[Document], Sequence[Document]], list[dict[str, float]]]


@dataclass(frozen=True)
class FusionSettings:
    folds: int = 5
    evidence: bool = True
    partial: bool = True  # shorter runs of the evidence phrases, a lexicon source of their own
    split: bool = True  # the coders' discontinuous mentions, parts in order
    snap: bool = True  # evidence spans take in the words coders mark next to a match
    mined: bool = True
    catalogue: bool = True
    num_leaves: int = 15
    rounds: int = 300
    learning_rate: float = 0.05
    min_rows_in_leaf: int = 20
    lightgbm: dict[str, Any] = field(default_factory=dict)
    # The combiner reads the network's logit, fitted on out-of-fold networks (one per fold,
    # training/fold_networks.py: k more fine-tunings, so the `full` preset only).
    network: bool = False
    network_candidates: int = 0  # the network's top codes added to each note's candidates
    # A diagnosis every lexicon match of which is negated scores this share of its probability
    # (model.fusion.demote_negated_only): a note that rules a finding out does not suggest it
    # first. CodiEsp's coders code negated findings, so there it costs a little (0.5: D-es dev
    # MAP -0.001; docs/BENCHMARKS.md). Procedure label spaces are never demoted: "TAC negativo"
    # negates the finding, not the scan.
    negated_only_factor: float = 0.5


@dataclass
class FusionRows:
    """Feature rows of every (note, candidate) pair, with labels and which note each row is."""

    features: np.ndarray  # (R, F) float32
    labels: np.ndarray  # (R,) int8
    note_index: np.ndarray  # (R,) int32
    codes: list[str]  # (R,)
    gold_found: int = 0  # gold (note, code) pairs among the candidates
    gold_total: int = 0

    @property
    def candidate_recall(self) -> float:
        return self.gold_found / self.gold_total if self.gold_total else float("nan")


def build_features(
    documents: Sequence[Document],
    settings: FusionSettings,
    catalogue: Phrases | None,
    context: ContextRules | None = None,
) -> FeatureBuilder:
    """The torch-free branches built on `documents`."""
    lexicon = build_lexicon(
        documents,
        evidence=settings.evidence,
        partial=settings.partial,
        split=settings.split,
        mined=settings.mined,
        catalogue=catalogue if settings.catalogue else None,
        snap=settings.snap,
    )
    neighbours = NeighbourIndex.build(
        [document.text for document in documents], [document.codes for document in documents]
    )
    return FeatureBuilder(lexicon, neighbours, dict(code_counts(documents)), context)


def score_rows(
    builder: FeatureBuilder,
    documents: Sequence[Document],
    network: Sequence[Mapping[str, float]] | None = None,
    extra_candidates: int = 0,
) -> FusionRows:
    """Candidates and feature rows for `documents` (gold labels from the documents)."""
    blocks, labels, notes, codes = [], [], [], []
    found = total = 0
    for index, document in enumerate(documents):
        logits = network[index] if network is not None else None
        extra: list[str] = []
        if logits and extra_candidates:
            extra = sorted(logits, key=lambda code: -logits[code])[:extra_candidates]
        signals = builder.signals(document.text)
        candidates = builder.candidates(signals, extra)
        gold = set(document.codes)
        blocks.append(builder.rows(signals, candidates, logits))
        labels += [int(code in gold) for code in candidates]
        notes += [index] * len(candidates)
        codes += candidates
        found += len(gold & set(candidates))
        total += len(gold)
    features = np.concatenate(blocks) if blocks else np.zeros((0, len(FEATURES)), np.float32)
    return FusionRows(
        features, np.array(labels, np.int8), np.array(notes, np.int32), codes, found, total
    )


def fold_of(n_documents: int, folds: int, seed: int) -> np.ndarray:
    """A fold number per document, balanced and shuffled with `seed`."""
    order = np.random.default_rng(seed).permutation(n_documents)
    assignment = np.empty(n_documents, dtype=np.int32)
    assignment[order] = np.arange(n_documents) % folds
    return assignment


def out_of_fold_rows(
    documents: Sequence[Document],
    settings: FusionSettings,
    catalogue: Phrases | None,
    network_logits: NetworkLogits | None = None,
    context: ContextRules | None = None,
    *,
    seed: int = 13,
) -> FusionRows:
    """Rows for every training note, each from branches built without that note's fold (folds
    drawn with `seed`)."""
    assignment = fold_of(len(documents), settings.folds, seed)
    parts: list[FusionRows] = []
    positions: list[np.ndarray] = []
    for fold in range(settings.folds):
        held_out = np.flatnonzero(assignment == fold)
        kept = [documents[i] for i in np.flatnonzero(assignment != fold).tolist()]
        scored = [documents[i] for i in held_out.tolist()]
        builder = build_features(kept, settings, catalogue, context)
        network = network_logits(kept, scored) if network_logits is not None else None
        parts.append(score_rows(builder, scored, network, settings.network_candidates))
        positions.append(held_out)
    return FusionRows(
        np.concatenate([part.features for part in parts]),
        np.concatenate([part.labels for part in parts]),
        np.concatenate(
            [held[part.note_index] for held, part in zip(positions, parts, strict=True)]
        ).astype(np.int32),
        [code for part in parts for code in part.codes],
        sum(part.gold_found for part in parts),
        sum(part.gold_total for part in parts),
    )


def fit_combiner(rows: FusionRows, settings: FusionSettings, *, seed: int = 13) -> Any:
    """A LightGBM booster (binary log loss) on the out-of-fold rows; deterministic."""
    import lightgbm

    params = {
        "objective": "binary",
        "num_leaves": settings.num_leaves,
        "learning_rate": settings.learning_rate,
        "min_data_in_leaf": settings.min_rows_in_leaf,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
        "verbosity": -1,
        **settings.lightgbm,
    }
    data = lightgbm.Dataset(rows.features, label=rows.labels, feature_name=list(FEATURES))
    if params["objective"] == "lambdarank":
        # Rows of one note are contiguous (out_of_fold_rows keeps them together).
        starts = np.flatnonzero(np.r_[True, rows.note_index[1:] != rows.note_index[:-1]])
        sizes = np.diff(np.r_[starts, len(rows.note_index)])
        data.set_group(sizes)
    return lightgbm.train(params, data, num_boost_round=settings.rounds)


def _float32_floor(value: float) -> float:
    """The largest float32 <= value: float32 x <= it exactly when x <= value."""
    single = np.float32(value)
    if float(single) > value:
        single = np.nextafter(single, np.float32(-np.inf))
    return float(single)


def _tree_nodes(tree: Mapping[str, Any], tree_id: int, attrs: dict[str, list[Any]]) -> None:
    """Append one LightGBM tree's nodes to the TreeEnsembleRegressor attribute lists."""
    next_id = 0

    def visit(node: Mapping[str, Any]) -> int:
        nonlocal next_id
        node_id = next_id
        next_id += 1
        attrs["nodes_treeids"].append(tree_id)
        attrs["nodes_nodeids"].append(node_id)
        if "leaf_value" in node or "split_feature" not in node:
            for key, value in (("featureids", 0), ("values", 0.0), ("modes", "LEAF")):
                attrs[f"nodes_{key}"].append(value)
            attrs["nodes_truenodeids"].append(0)
            attrs["nodes_falsenodeids"].append(0)
            attrs["nodes_missing_value_tracks_true"].append(0)
            attrs["target_treeids"].append(tree_id)
            attrs["target_nodeids"].append(node_id)
            attrs["target_ids"].append(0)
            attrs["target_weights"].append(float(node.get("leaf_value", 0.0)))
            return node_id
        if node["decision_type"] != "<=":
            raise ValueError(f"cannot export LightGBM split {node['decision_type']!r}")
        slot = len(attrs["nodes_modes"])
        attrs["nodes_featureids"].append(int(node["split_feature"]))
        attrs["nodes_values"].append(_float32_floor(float(node["threshold"])))
        attrs["nodes_modes"].append("BRANCH_LEQ")
        attrs["nodes_truenodeids"].append(-1)
        attrs["nodes_falsenodeids"].append(-1)
        attrs["nodes_missing_value_tracks_true"].append(int(bool(node.get("default_left"))))
        attrs["nodes_truenodeids"][slot] = visit(node["left_child"])
        attrs["nodes_falsenodeids"][slot] = visit(node["right_child"])
        return node_id

    visit(tree)


def export_combiner(booster: Any, path: Path) -> None:
    """The booster's raw margin as an ONNX TreeEnsembleRegressor (ai.onnx.ml): `features` (R, F)
    float32 in, `margin` (R, 1) out; equal to `booster.predict(x, raw_score=True)`."""
    import onnx
    from onnx import TensorProto, helper

    attrs: dict[str, list[Any]] = {
        key: []
        for key in (
            "nodes_treeids",
            "nodes_nodeids",
            "nodes_featureids",
            "nodes_values",
            "nodes_modes",
            "nodes_truenodeids",
            "nodes_falsenodeids",
            "nodes_missing_value_tracks_true",
            "target_treeids",
            "target_nodeids",
            "target_ids",
            "target_weights",
        )
    }
    for tree_id, tree in enumerate(booster.dump_model()["tree_info"]):
        _tree_nodes(tree["tree_structure"], tree_id, attrs)
    settings: dict[str, Any] = {
        "n_targets": 1,
        "aggregate_function": "SUM",
        "base_values": [0.0],
        "post_transform": "NONE",
        **attrs,
    }
    node = helper.make_node(
        "TreeEnsembleRegressor",
        [COMBINER_INPUT],
        [COMBINER_OUTPUT],
        domain="ai.onnx.ml",
        **settings,
    )
    graph = helper.make_graph(
        [node],
        "fusion_combiner",
        [helper.make_tensor_value_info(COMBINER_INPUT, TensorProto.FLOAT, ["rows", len(FEATURES)])],
        [helper.make_tensor_value_info(COMBINER_OUTPUT, TensorProto.FLOAT, ["rows", 1])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="plant-icd",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


@dataclass
class FittedFusion:
    """A fused model written beside the graph: what bundle.json records and the new codes."""

    info: dict[str, Any]  # model.bundle.FusionInfo without the file hashes
    files: dict[str, Path]  # bundle file name -> written file
    extra_codes: list[str]  # codes only the fusion proposes, sorted


def english_translator(
    spec: CorpusSpec, english_docs: Sequence[Document]
) -> tuple[dict[str, Document], WordTranslator]:
    """For CodiEsp English training notes: their Spanish originals by id, and the word aligner
    (training/projection.py) fitted on those pairs and the background notes, never on dev or
    test notes unless `english_docs` holds them."""
    spanish_spec = replace(spec, lang="es")
    spanish = {document.id: document for document in spanish_spec.load("train")}
    background = list(zip(spanish_spec.load("background"), spec.load("background"), strict=True))
    pairs = [(spanish[doc.id], doc) for doc in english_docs if doc.id in spanish]
    return spanish, fit_translator(pairs + background)


def fusion_documents(train_docs: Sequence[Document], spec: CorpusSpec) -> list[Document]:
    """The training notes with evidence spans in their own language.

    CodiEsp English notes get the Spanish spans projected onto them (training/projection.py);
    the word alignment learns from the training and background notes, never dev or test."""
    if spec.name != "codiesp" or spec.lang != "en":
        return list(train_docs)
    spanish, translator = english_translator(spec, train_docs)
    return [
        project_spans(spanish[document.id], document, translator)
        if document.id in spanish
        else document
        for document in train_docs
    ]


def corpus_catalogue(spec: CorpusSpec) -> Phrases | None:
    """Catalogue phrases in the notes' language for the corpus's ICD-10-CM codes, if any."""
    if CodeSystem.ICD10_CM not in spec.code_systems:
        return None
    descriptions = icd10cm_descriptions(spec.lang)
    return catalogue_phrases(descriptions) if descriptions else None


DIAGNOSIS_SYSTEMS = frozenset({CodeSystem.ICD10_CM, CodeSystem.ICD9_CM})


def negated_only_factor(spec: CorpusSpec, settings: FusionSettings) -> float:
    """The demotion of negated-only candidates a bundle of `spec`'s codes serves with: the
    settings' where every code is a diagnosis, else none (1.0)."""
    diagnoses = set(spec.code_systems) <= DIAGNOSIS_SYSTEMS
    return settings.negated_only_factor if diagnoses else 1.0


def fit_fusion(
    train_docs: Sequence[Document],
    spec: CorpusSpec,
    settings: FusionSettings,
    out_dir: Path,
    network_codes: Sequence[str],
    *,
    seed: int,
    network_logits: NetworkLogits | None = None,
) -> FittedFusion:
    """Fit the combiner out of fold, then write the branches built on every training note
    (`train_docs` as `fusion_documents` returns them: with spans in the notes' language).
    `network_logits` (out-of-fold networks) lets the combiner read the network's logit."""
    started = time.perf_counter()
    documents = list(train_docs)
    catalogue = corpus_catalogue(spec) if settings.catalogue else None
    language = spec.lang if spec.lang in LANGUAGES else None
    context = ContextRules.for_language(language) if language else None
    rows = out_of_fold_rows(
        documents, settings, catalogue, network_logits, context=context, seed=seed
    )
    booster = fit_combiner(rows, settings, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        COMBINER_FILE: out_dir / COMBINER_FILE,
        LEXICON_FILE: out_dir / LEXICON_FILE,
        NEIGHBOURS_FILE: out_dir / NEIGHBOURS_FILE,
    }
    export_combiner(booster, files[COMBINER_FILE])
    builder = build_features(documents, settings, catalogue, context)
    builder.lexicon.save(files[LEXICON_FILE])
    builder.neighbours.save(files[NEIGHBOURS_FILE])
    known = set(network_codes)
    info = {
        "files": {},
        "features": list(FEATURES),
        "context_language": language,
        "network_candidates": settings.network_candidates if network_logits else 0,
        "uses_network": network_logits is not None,
        "negated_only_factor": negated_only_factor(spec, settings),
        "report": {
            "folds": settings.folds,
            "rows": len(rows.labels),
            "positive_rows": int(rows.labels.sum()),
            "candidate_recall": round(rows.candidate_recall, 4),
            "evidence_spans": sum(len(document.spans) for document in documents),
            "lexicon_mentions": {
                source: len(builder.lexicon.trie(source)) for source in builder.lexicon.sources
            },
            "seconds": round(time.perf_counter() - started, 1),
        },
    }
    return FittedFusion(info, files, sorted(builder.lexicon.codes() - known))
