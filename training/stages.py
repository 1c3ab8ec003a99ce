"""The network's training stages over the stage cache: tokenizer, language-model pretraining,
mutual information, L2R and staged fine-tuning. Each is an object with a name, the code its
cache key covers, and `run(state)`, which reads what earlier stages left in the `RunState` and
adds its own output.

Under torchrun (`ctx.enabled`) the cheap deterministic stages (tokenizer, MI, L2R) run on rank 0
while the others wait; LM pretraining and fine-tuning run data-parallel on every rank.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from model.nn.checkpoint import load_state, save_checkpoint
from model.nn.config import PlantConfig
from model.nn.encoders import AWDLSTMLanguageModel, position_limit
from model.nn.network import PlantClassifier
from model.tokenizer import NoteTokenizer
from training.attention_loss import SpanTokens, span_token_targets, targets_digest
from training.corpora.base import Document
from training.datasets import CorpusSpec
from training.distributed import DistContext, barrier
from training.evaluate import gold_matrix, known_gold_matrix
from training.final import FinalReference
from training.finetune import run_stage
from training.l2r import train_l2r
from training.lm import pretrain_language_model
from training.mutual_info import label_matrix, normalized_mutual_information, presence_matrix
from training.planting import evidence_counts, evidence_relevance
from training.presets import Preset
from training.progress import Notify
from training.stage_cache import StageCache, code_digest, stage_key

if TYPE_CHECKING:
    from model.bundle import BundleMetadata
    from training.evaluate import Evaluation


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class RunState:
    """What the stages share: the run's inputs, then each stage's output as it finishes."""

    spec: CorpusSpec
    out: Path  # the bundle directory
    preset_name: str
    preset: Preset
    seed: int
    plant: bool
    fusion: bool
    evidence: bool
    encoder_dir: Path | None
    top_k_export: int
    train_split: str
    cache: StageCache
    ctx: DistContext
    notify: Notify
    train_docs: list[Document]
    dev_docs: list[Document]
    unlabelled: list[Document]  # train + background notes, for the tokenizer and the LM
    evidence_docs: list[Document]  # training notes with spans in their own language
    codes: list[str]  # the network's label space, most frequent first
    corpus_key: str
    # Set for a final refit: train_docs already hold dev, epochs and thresholds come from here.
    final: FinalReference | None = None
    reports: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # Filled by the stages, in order.
    tokenizer_path: Path | None = None
    tokenizer_key: str = ""
    network: PlantConfig | None = None
    train_notes: list[np.ndarray] = field(default_factory=list)
    dev_notes: list[np.ndarray] = field(default_factory=list)
    lm_key: str = ""
    lm_path: Path | None = None
    mi_key: str = ""
    mutual_information: np.ndarray | None = None
    l2r_key: str = ""
    l2r_path: Path | None = None
    classifier: PlantClassifier | None = None
    # Filled by the bundle stages (training/bundling.py).
    metadata: BundleMetadata | None = None
    fusion_files: dict[str, Path] = field(default_factory=dict)
    evaluation: Evaluation | None = None

    @property
    def tokenizer(self) -> NoteTokenizer:
        assert self.tokenizer_path is not None, "the tokenizer stage has not run"
        return NoteTokenizer.load(self.tokenizer_path)

    @property
    def config(self) -> PlantConfig:
        assert self.network is not None, "the tokenizer stage has not run"
        return self.network


class Stage(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def code(self) -> tuple[str, ...]:
        """Modules (dotted names) whose source is part of the stage's cache key, besides the
        stage's own class."""
        ...

    def run(self, state: RunState) -> None: ...


def _code(stage: Stage) -> str:
    return code_digest(type(stage), *stage.code)


def tokenize_documents(tokenizer: NoteTokenizer, documents: Sequence[Document]) -> list[np.ndarray]:
    return [note.ids for note in tokenizer.encode_batch([doc.text for doc in documents])]


def _transformer_fields(encoder_dir: Path, tokenizer: NoteTokenizer) -> dict[str, Any]:
    """Network fields for a Hugging Face backbone: its vocabulary, pad id and chunk length."""
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


class TrainTokenizer:
    """BPE on unlabelled training text (train + background), or the backbone's own; then the
    network's config (its vocabulary is the tokenizer's) and the tokenized notes."""

    name = "tokenizer"
    code = ("model.tokenizer",)

    def run(self, state: RunState) -> None:
        from model.nn.config import build_config

        if state.encoder_dir is None:
            key = stage_key(state.corpus_key, state.preset.vocab_size, _code(self))
        else:
            hf_tokenizer = state.encoder_dir / "tokenizer.json"
            key = stage_key("hf", hashlib.sha256(hf_tokenizer.read_bytes()).hexdigest())
        path = state.cache.path(self.name, key, ".json")
        if state.ctx.is_main and not path.is_file():
            if state.encoder_dir is None:
                texts = [doc.text for doc in state.unlabelled]
                NoteTokenizer.train(texts, state.preset.vocab_size).save(path)
            else:
                NoteTokenizer.from_huggingface(state.encoder_dir).save(path)
        barrier(state.ctx)
        state.tokenizer_path, state.tokenizer_key = path, key
        tokenizer = state.tokenizer
        seed_everything(state.seed)
        fields = dict(state.preset.network)
        if state.encoder_dir is not None:
            fields |= _transformer_fields(state.encoder_dir, tokenizer)
        state.network = build_config(
            vocab_size=fields.pop("vocab_size", tokenizer.vocab_size),
            n_codes=len(state.codes),
            top_k_export=min(state.top_k_export, len(state.codes)),
            branches=("laat", "planted", "static") if state.plant else ("laat", "planted"),
            **fields,
        )
        state.train_notes = tokenize_documents(tokenizer, state.train_docs)
        state.dev_notes = tokenize_documents(tokenizer, state.dev_docs)


class PretrainLanguageModel:
    """Next-token pretraining of the AWD-LSTM encoder (data-parallel under torchrun); skipped for
    a pretrained transformers backbone."""

    name = "lm"
    code = ("training.lm", "model.nn.network")

    def run(self, state: RunState) -> None:
        encoder = asdict(state.config.encoder)
        key = stage_key(state.tokenizer_key, encoder, asdict(state.preset.lm), _code(self))
        path = state.cache.path(self.name, key, ".pt")
        report = state.cache.report(self.name, key)
        barrier(state.ctx)  # every rank has looked at the cache before rank 0 may write to it
        if state.config.encoder.kind == "transformer":
            report = {"skipped": f"pretrained transformers backbone {state.encoder_dir}"}
        elif report is None or not path.is_file():
            report = self._pretrain(state, path, encoder)
            if state.ctx.is_main:
                state.cache.save_report(self.name, key, report)
        barrier(state.ctx)
        state.reports[self.name] = report
        state.lm_key, state.lm_path = key, path

    def _pretrain(self, state: RunState, path: Path, encoder: dict[str, Any]) -> dict[str, Any]:
        seed_everything(state.seed)
        language_model = AWDLSTMLanguageModel(state.config.encoder).to(state.ctx.device)
        background = state.unlabelled[len(state.train_docs) :]
        notes = state.train_notes + tokenize_documents(state.tokenizer, background)
        report = pretrain_language_model(
            language_model,
            notes,
            state.tokenizer.eos_id,
            state.preset.lm,
            progress=state.notify,
            ctx=state.ctx,
            seed=state.seed,
        )
        if state.ctx.is_main:
            save_checkpoint(path, encoder, language_model.encoder.cpu().state_dict())
        return asdict(report)


class MutualInformation:
    """Normalised mutual information of tokens and codes, training split only."""

    name = "mi"
    code = ("training.mutual_info",)

    def run(self, state: RunState) -> None:
        key = stage_key(state.tokenizer_key, state.codes, _code(self))
        path = state.cache.path(self.name, key, ".npy")
        if state.ctx.is_main and not path.is_file():
            code_index = {code: col for col, code in enumerate(state.codes)}
            presence = presence_matrix(state.train_notes, state.config.encoder.vocab_size)
            rows = [[code_index[c] for c in doc.codes] for doc in state.train_docs]
            labels = label_matrix(rows, len(state.codes))
            state.cache.save_array(path, normalized_mutual_information(presence, labels))
        barrier(state.ctx)
        state.mi_key, state.mutual_information = key, np.load(path)


class RankTokens:
    """L2R (LambdaRank): tokens ranked per code by the coders' evidence where the corpus has
    spans, by mutual information elsewhere; its factors are what the planted branch starts from."""

    name = "l2r"
    code = ("training.l2r", "training.planting")

    def run(self, state: RunState) -> None:
        assert state.mutual_information is not None, "the mi stage has not run"
        relevance, planting = state.mutual_information, "mi"
        if state.plant and state.evidence and any(doc.spans for doc in state.evidence_docs):
            marked = evidence_counts(
                state.evidence_docs, state.tokenizer, state.codes, state.preset.max_tokens
            )
            relevance = evidence_relevance(state.mutual_information, marked)
            planting = hashlib.sha256(marked.tobytes()).hexdigest()[:16]
        # The planted branch takes the L2R factors as they are: their width is the network's.
        config = replace(state.preset.l2r, dim=state.config.l2r_dim)
        key = stage_key(state.mi_key, asdict(config), planting, _code(self))
        path = state.cache.path(self.name, key, ".pt")
        cached = state.cache.report(self.name, key)
        if state.ctx.is_main and (cached is None or not path.is_file()):
            model, report = train_l2r(relevance, config, progress=state.notify, seed=state.seed)
            save_checkpoint(path, asdict(config), model.state_dict())
            state.cache.save_report(self.name, key, asdict(report) | {"planting": planting})
        barrier(state.ctx)
        state.reports[self.name] = state.cache.report(self.name, key)
        state.l2r_key, state.l2r_path = key, path


class FineTune:
    """The classifier: the pretrained encoder, the planted L2R factors and MI, output biases at
    the codes' training prevalence; then fine-tuning stage by stage, each cached."""

    name = "classifier"
    code = (
        "training.finetune",
        "training.trainer",
        "training.attention_loss",
        "model.nn.network",
        "model.nn.shortlist",
        "model.batching",
    )

    def run(self, state: RunState) -> None:
        classifier = self._initial(state)
        train_labels = gold_matrix(state.train_docs, state.codes)
        dev_labels = known_gold_matrix(state.dev_docs, state.codes)
        config = state.config.to_dict()
        spans = self._span_targets(state)
        key = stage_key(
            state.lm_key,
            state.l2r_key if state.plant else "lant",
            asdict(state.config),
            targets_digest(spans) if spans is not None else "no-attention-loss",
            _code(self),
        )
        finetune = state.preset.finetune
        reports = []
        for step in finetune.stages:
            started = perf_counter()
            if state.final is not None:
                step = replace(step, epochs=state.final.epochs.get(step.name, step.epochs))
            key = stage_key(
                key, asdict(step), asdict(finetune), state.ctx.world_size, state.final is None
            )
            name = f"{self.name}-{step.name}"
            path = state.cache.path(name, key, ".pt")
            report = state.cache.report(name, key)
            barrier(state.ctx)
            if report is None or not path.is_file():
                report = asdict(
                    run_stage(
                        classifier,
                        step,
                        (state.train_notes, train_labels),
                        (state.dev_notes, dev_labels),
                        finetune,
                        progress=state.notify,
                        ctx=state.ctx,
                        seed=state.seed,
                        select_on_dev=state.final is None,
                        train_spans=spans,
                    )
                )
                if state.ctx.is_main:
                    save_checkpoint(path, config, classifier.state_dict())
                    state.cache.save_report(name, key, report)
            else:
                classifier.load_state_dict(load_state(path, config, state.ctx.device))
            barrier(state.ctx)
            reports.append(report)
            state.seconds[f"{self.name}/{step.name}"] = perf_counter() - started
        state.reports[self.name] = reports
        state.classifier = classifier

    @staticmethod
    def _span_targets(state: RunState) -> list[list[SpanTokens]] | None:
        """The attention loss's targets, where the preset weighs it and the notes have spans."""
        weighted = state.preset.finetune.attention_weight > 0
        if not (weighted and state.evidence and any(doc.spans for doc in state.evidence_docs)):
            return None
        return span_token_targets(
            state.evidence_docs, state.tokenizer, state.codes, state.preset.max_tokens
        )

    def _initial(self, state: RunState) -> PlantClassifier:
        seed_everything(state.seed)
        classifier = PlantClassifier(state.config)
        if state.config.encoder.kind == "awd_lstm":
            assert state.lm_path is not None, "the lm stage has not run"
            encoder = load_state(state.lm_path, asdict(state.config.encoder))
            classifier.encoder.load_state_dict(encoder)
        if state.plant:
            assert state.l2r_path is not None and state.mutual_information is not None
            l2r_config = replace(state.preset.l2r, dim=state.config.l2r_dim)
            factors = load_state(state.l2r_path, asdict(l2r_config))
            classifier.plant(
                factors["token_factors"],
                factors["token_bias"],
                factors["code_factors"],
                factors["code_bias"],
            )
            classifier.set_mutual_information(torch.from_numpy(state.mutual_information))
        classifier.set_code_priors(gold_matrix(state.train_docs, state.codes).mean(axis=0))
        return classifier.to(state.ctx.device)
