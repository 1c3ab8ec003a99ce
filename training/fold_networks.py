"""Out-of-fold network logits, so the fusion combiner may read the network (the `full` preset).

The combiner can weigh the network's logit honestly only if every training row's logit comes from
a network that never saw that row's note. For each fold of the fusion's k-fold split, a network is
trained on the other folds with the run's own recipe, and it scores the held-out notes:

* the tokenizer and the pretrained LM are the run's own (both are label-free);
* mutual information, the L2R planting (from the kept notes' evidence) and fine-tuning use the
  kept notes only, with the label space of the run, so a logit column means the same code;
* fine-tuning runs the epoch counts the run's own network selected on dev, like a final refit
  (no split is scored to stop early);
* a code none of the kept notes carries gets no logit (NaN in the combiner's row), as the served
  network has none for a code training never saw.

Each fold's stages go through the stage cache under keys of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import count
from typing import Any

import numpy as np

from training.corpora.base import Document
from training.final import FinalReference
from training.finetune import predict_logits
from training.fusion import NetworkLogits
from training.stage_cache import stage_key
from training.stages import FineTune, MutualInformation, RankTokens, RunState


def selected_epochs(reports: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Fine-tuning stage -> the epoch the run's network kept (at least 1)."""
    return {report["name"]: max(1, int(report["best_epoch"])) for report in reports}


def notes_of(state: RunState, documents: Sequence[Document]) -> list[np.ndarray]:
    """The token ids the run already holds for these training notes (by note id)."""
    by_id = dict(zip((doc.id for doc in state.train_docs), state.train_notes, strict=True))
    return [by_id[document.id] for document in documents]


def fold_state(state: RunState, kept: Sequence[Document], fold: int) -> RunState:
    """A copy of the run's state that trains on `kept` alone, cached under the fold's keys."""
    ids = sorted(document.id for document in kept)
    epochs = selected_epochs(state.reports["classifier"])
    return replace(
        state,
        train_docs=list(kept),
        evidence_docs=list(kept),
        train_notes=notes_of(state, kept),
        # The MI, L2R and classifier keys derive from this one: a fold never reads the run's.
        tokenizer_key=stage_key(state.tokenizer_key, "fold", fold, ids),
        final=FinalReference(
            bundle=f"fold {fold}", epochs=epochs, thresholds={}, global_threshold=0.5
        ),
        reports={},
        seconds={},
        classifier=None,
    )


def fold_network_logits(state: RunState) -> NetworkLogits:
    """What `training.fusion.out_of_fold_rows` calls per fold: a network trained on the kept
    notes gives each scored note its logit for every code of the run's label space."""
    folds = count()

    def logits(kept: Sequence[Document], scored: Sequence[Document]) -> list[dict[str, float]]:
        fold = next(folds)
        sub = fold_state(state, kept, fold)
        for stage in (MutualInformation(), RankTokens(), FineTune()):
            stage.run(sub)
        assert sub.classifier is not None
        finetune = state.preset.finetune
        values = predict_logits(
            sub.classifier,
            notes_of(state, scored),
            finetune.batch_size * 2,
            finetune.max_tokens,
            state.config.pad_id,
            state.ctx.device,
        )  # (len(scored), C)
        state.seconds.update({f"fusion/fold-{fold}/{k}": v for k, v in sub.seconds.items()})
        # A code no kept note carries gets no logit, as a code the served network never saw
        # has none. Otherwise the only rows without a logit are catalogue codes of no training
        # note, never positive, and the combiner learns "no logit: not the code", which at
        # serving is every unseen code (docs/BENCHMARKS.md).
        carried = {code for document in kept for code in document.codes}
        return [
            {
                code: value
                for code, value in zip(state.codes, row.tolist(), strict=True)
                if code in carried
            }
            for row in values
        ]

    return logits
