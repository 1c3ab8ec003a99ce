"""A small synthetic corpus laid out like CodiEsp, where each code has tell-tale words.

Models trained on it must rank a note's codes above the others, which makes end-to-end tests
meaningful without the real corpus.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# code -> words that signal it (ICD-10-CM codes that exist, so descriptions resolve)
SIGNALS: dict[str, tuple[str, ...]] = {
    "i10": ("hypertension", "blood pressure elevated"),
    "e11.9": ("diabetes", "glucose high", "metformin"),
    "j18.9": ("pneumonia", "consolidation", "crackles"),
    "n39.0": ("urinary infection", "dysuria"),
    "r50.9": ("fever", "febrile"),
    "k35.80": ("appendicitis", "right lower quadrant"),
}
FILLER = (
    "patient admitted to the ward",
    "history was unremarkable",
    "examination was performed",
    "follow up was arranged",
    "laboratory tests were requested",
    "the family was informed",
    "no allergies were reported",
)


def synthetic_note(
    rng: np.random.Generator, codes: list[str]
) -> tuple[str, list[tuple[str, int, int]]]:
    """A note and its evidence: (code, start, end) of each code's signal phrase."""
    sentences: list[tuple[str, str | None]] = [
        (str(rng.choice(FILLER)), None) for _ in range(int(rng.integers(3, 7)))
    ]
    for code in codes:
        position = int(rng.integers(0, len(sentences) + 1))
        sentences.insert(position, (str(rng.choice(SIGNALS[code])), code))
    text, spans = "", []
    for index, (sentence, code) in enumerate(sentences):
        if index:
            text += ". "
        if code is not None:
            spans.append((code, len(text), len(text) + len(sentence)))
        text += sentence.capitalize()
    return text + ".", spans


def write_synthetic_codiesp(
    root: Path, n_train: int = 60, n_dev: int = 30, n_background: int = 40, seed: int = 0
) -> Path:
    """Write train/dev (with D files) and background splits under `root`; returns `root`."""
    rng = np.random.default_rng(seed)
    all_codes = list(SIGNALS)
    for split, count in (("train", n_train), ("dev", n_dev), ("background", n_background)):
        rows: list[str] = []
        evidence: list[str] = []
        for folder in ("text_files", "text_files_en"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            doc_id = f"S{split[:2].upper()}{index:04d}-1"
            codes = list(rng.choice(all_codes, size=int(rng.integers(1, 3)), replace=False))
            text, spans = synthetic_note(rng, codes)
            evidence += [
                f"{doc_id}\tDIAGNOSTICO\t{code}\t{text[start:end]}\t{start} {end}\n"
                for code, start, end in spans
            ]
            for folder in ("text_files", "text_files_en"):
                (root / split / folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
            rows += [f"{doc_id}\t{code}\n" for code in codes]
        if split != "background":
            (root / split / f"{split}D.tsv").write_text("".join(rows), encoding="utf-8")
            (root / split / f"{split}P.tsv").write_text("", encoding="utf-8")
            (root / split / f"{split}X.tsv").write_text("".join(evidence), encoding="utf-8")
    return root
