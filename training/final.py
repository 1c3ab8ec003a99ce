"""The final refit (`plant-icd train --final BUNDLE`): learn from every labelled note.

Dev selects the epoch counts and tunes the thresholds in a train-only run; the final run trains on
train + dev with exactly those epochs (no dev left to select on) and carries those thresholds.
Its dev numbers are the train-only run's: dev is training data in the final bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import load_bundle
from model.thresholds import Thresholds


@dataclass(frozen=True)
class FinalReference:
    """What a final refit takes from the train-only run."""

    bundle: str  # name@version of the train-only bundle
    epochs: dict[str, int]  # fine-tuning stage -> the epoch dev selected
    thresholds: dict[str, float]  # code -> threshold tuned on dev
    global_threshold: float

    def record(self, documents: int) -> dict[str, Any]:
        """What bundle.json keeps under training.final."""
        return {"selected_from": self.bundle, "epochs": self.epochs, "documents": documents}

    def thresholds_for(self, codes: Sequence[str]) -> Thresholds:
        """The tuned thresholds for this label space; codes new to it take the global one."""
        per_code = [self.thresholds.get(code, self.global_threshold) for code in codes]
        return Thresholds(self.global_threshold, np.asarray(per_code, dtype=np.float64), 3)


def read_final_reference(bundle_dir: Path) -> FinalReference:
    """The selections of a train-only `plant-icd train` bundle (checked loader)."""
    metadata = load_bundle(bundle_dir).metadata
    training: dict[str, Any] = dict(metadata.training)
    stages: list[dict[str, Any]] = list(training.get("classifier") or [])
    if not stages or training.get("final"):
        raise ValueError(
            f"{bundle_dir} is not a train-only `plant-icd train` bundle with fine-tuning reports: "
            "point --final at the bundle trained on train alone with the same preset and seed"
        )
    per_code = metadata.thresholds["per_code"]
    return FinalReference(
        bundle=f"{metadata.name}@{metadata.version}",
        epochs={stage["name"]: max(1, int(stage["best_epoch"])) for stage in stages},
        thresholds={
            entry["code"]: float(value)
            for entry, value in zip(metadata.codes, per_code, strict=True)
            if value is not None
        },
        global_threshold=float(metadata.thresholds["global_threshold"]),
    )
