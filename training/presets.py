"""Training presets as data: one `Preset` per recipe, each field stored once.

A preset fixes the vocabulary, the network fields that differ from the network's defaults
(`model.nn.network.EncoderConfig` / `PlantConfig`, which are the demo-sized network), and the
configs of LM pretraining, L2R, fine-tuning and fusion. It holds no seed: the run's seed is
passed to each stage (training/plant.py). `max_tokens` lives in the fine-tuning config alone and
is what the bundle's runtime reads too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from model.metadata import DEFAULT_SHORTLIST_SIZE
from training.finetune import FinetuneConfig, StageConfig
from training.fusion import FusionSettings
from training.l2r import L2RConfig
from training.lm import LMConfig


@dataclass(frozen=True)
class ShortlistSettings:
    """Two-stage decoding of the bundle (bundle.json `shortlist`): S, and the training prior
    above which a code is always decoded."""

    size: int = DEFAULT_SHORTLIST_SIZE
    prior: float = 0.1  # codes in at least this share of the training notes (0: none)

    def min_train_notes(self, n_train_notes: int) -> int:
        """The prior as a count of training notes (what the runtime compares code counts with)."""
        return max(1, math.ceil(self.prior * n_train_notes)) if self.prior > 0 else 0


@dataclass(frozen=True)
class Preset:
    name: str
    vocab_size: int
    # EncoderConfig / PlantConfig fields that differ from their defaults (model.nn.build_config).
    network: Mapping[str, Any]
    lm: LMConfig
    l2r: L2RConfig
    finetune: FinetuneConfig
    fusion: FusionSettings = field(default_factory=FusionSettings)
    shortlist: ShortlistSettings = field(default_factory=ShortlistSettings)

    @property
    def max_tokens(self) -> int:
        """Tokens read per note: in fine-tuning, planting and the bundle's runtime."""
        return self.finetune.max_tokens


# Sized for the whole CodiEsp pipeline in under 20 minutes on 2 CPU cores; the network's
# defaults are this size.
_DEMO = Preset(
    name="demo",
    vocab_size=8000,
    # One LM epoch is short: light dropout lets it get past unigram statistics.
    network={
        "embedding_dropout": 0.0,
        "input_dropout": 0.1,
        "hidden_dropout": 0.05,
        "weight_dropout": 0.1,
        "output_dropout": 0.05,
    },
    # Many small steps: at batch 32 x 64 tokens the LM stayed at unigram perplexity
    # (~840) within budget; 8 x 32 reaches ~170 on the same tokens (docs/BENCHMARKS.md).
    lm=LMConfig(epochs=1, bptt=32, batch_size=8, lr=3e-3),
    l2r=L2RConfig(),
    finetune=FinetuneConfig(
        stages=[
            StageConfig("decoder", "decoder", epochs=6, lr=3e-3),
            StageConfig("top", "top", epochs=2, lr=1e-3),
            StageConfig("all", "all", epochs=2, lr=5e-4),
        ],
        batch_size=8,
        max_tokens=2048,
    ),
    # The fusion forces its ~250 candidates per note into the decoded set, so a small S
    # loses nothing: D-es dev MAP 0.5908 at S = 64 and 256 against 0.5911 decoding every
    # code; served p50 15.1 ms at S = 64 against 17.5 ms at 256 (docs/BENCHMARKS.md).
    shortlist=ShortlistSettings(size=64),
)


def _longer_budget(demo: Preset) -> Preset:
    """The demo's network with a longer budget: more LM pretraining on the background notes,
    more fine-tuning epochs, and a combiner that reads the network's logit through one
    out-of-fold network per fusion fold (training/fold_networks.py). Hours on 2 CPU cores
    (docs/BENCHMARKS.md); minutes on a GPU. Every candidate is decoded for the combiner, so S
    is the default, not the demo's."""
    epochs = {"decoder": 10, "top": 3, "all": 4}
    stages = [replace(step, epochs=epochs[step.name]) for step in demo.finetune.stages]
    return replace(
        demo,
        name="full",
        lm=replace(demo.lm, epochs=3),
        finetune=replace(demo.finetune, stages=stages, patience=3),
        fusion=FusionSettings(network=True, network_candidates=10),
        shortlist=ShortlistSettings(),
    )


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        # Seconds, for tests and smoke runs on synthetic corpora; not a useful model.
        "tiny": Preset(
            name="tiny",
            vocab_size=400,
            network={
                "emb_dim": 16,
                "hidden_dim": 24,
                "chunk_len": 32,
                "l2r_dim": 8,
                "laat_dim": 16,
                "inattention_k": 8,
                "window": 64,
            },
            lm=LMConfig(epochs=8, bptt=16, batch_size=4, lr=1e-2),
            l2r=L2RConfig(max_steps=30, codes_per_batch=16),
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
                attention_weight=0.5,  # exercises the attention loss wherever tests train
            ),
            fusion=FusionSettings(folds=2, catalogue=False, rounds=20, min_rows_in_leaf=2),
            # Fewer than the synthetic corpus's codes, so end-to-end runs decode a shortlist.
            shortlist=ShortlistSettings(size=3),
        ),
        "demo": _DEMO,
        "full": _longer_budget(_DEMO),
        # The AWD-LSTM of ULMFiT/PLANT (fastai's dropouts and bptt 72), the paper's decoder sizes.
        "paper": Preset(
            name="paper",
            vocab_size=30000,
            network={
                "emb_dim": 400,
                "hidden_dim": 1152,
                "n_layers": 3,
                "embedding_dropout": 0.02,
                "chunk_len": 72,
                "l2r_dim": 400,
                "laat_dim": 512,
                "inattention_k": 64,
                "window": 512,
            },
            lm=LMConfig(epochs=10, bptt=72, batch_size=64, lr=2e-3),
            l2r=L2RConfig(),
            finetune=FinetuneConfig(
                stages=[
                    StageConfig("decoder", "decoder", epochs=20, lr=3e-3),
                    StageConfig("top", "top", epochs=10, lr=1e-3),
                    StageConfig("all", "all", epochs=20, lr=5e-4),
                ],
                batch_size=16,
                max_tokens=4096,
                patience=4,
            ),
        ),
    }
)


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name]
