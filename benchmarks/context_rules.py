"""How often the coders' own CodiEsp evidence sits in a negated, hypothetical or family context.

Reads every X reference of the chosen splits, runs the Spanish context rules
(model/data/context_es.json) over its note, and reports, per split and label (D diagnoses,
P procedures), the share of references flagged in each category, the cues that flag most, and
examples to read. Coders do code some negated or hypothetical mentions (a ruled-out diagnosis
is sometimes coded), so this is the rate at which the rules would demote true evidence, not an
error rate. Run:

    python benchmarks/context_rules.py [--path ../shared/codiesp] [--splits train,dev]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    HelpFormatter,
    command_line,
    emit,
    facts_list,
    machine_facts,
    markdown_table,
)

from model.context import CATEGORIES, ContextFlags, ContextRules, NoteContext
from training.corpora import locate_codiesp, read_codiesp, read_codiesp_references
from training.corpora.base import EvidenceReference


@dataclass
class Tally:
    references: int = 0
    flagged: Counter[str] = field(default_factory=Counter)  # category (or "any") -> count
    # Per gold (note, code): the categories each of its references carries. A code whose every
    # reference is negated is what a "demote negated-only evidence" rule would push down.
    code_flags: dict[tuple[str, str], list[set[str]]] = field(default_factory=dict)
    cues: Counter[str] = field(default_factory=Counter)  # "category: cue" -> count
    examples: dict[str, list[str]] = field(default_factory=dict)


def reference_flags(note_context: NoteContext, reference: EvidenceReference) -> ContextFlags:
    """A reference is flagged when any of its parts is (the words between parts are not its)."""
    return ContextFlags.union(note_context.flags(start, end) for start, end in reference.parts)


def excerpt(text: str, reference: EvidenceReference, width: int = 60) -> str:
    """The reference in its sentence, marked with [[ ]], on one line."""
    left = text[max(0, reference.start - width) : reference.start]
    right = text[reference.end : reference.end + width]
    inside = text[reference.start : reference.end]
    return " ".join(f"…{left}[[{inside}]]{right}…".split()).replace("|", "/")


def tally_split(
    root: Path, split: str, rules: ContextRules, examples: int
) -> tuple[dict[str, Tally], float, int]:
    """Per label ("D", "P"), what the rules flag; also seconds spent reading notes, and chars."""
    texts = {document.id: document.text for document in read_codiesp(root, split)}
    started = time.perf_counter()
    contexts = {note_id: rules.read(text) for note_id, text in texts.items()}
    seconds = time.perf_counter() - started
    tallies = {"D": Tally(), "P": Tally()}
    for reference in read_codiesp_references(root, split):
        tally = tallies[reference.label]
        tally.references += 1
        flags = reference_flags(contexts[reference.note_id], reference)
        carried = {name for name in CATEGORIES if getattr(flags, name)}
        tally.code_flags.setdefault((reference.note_id, reference.code), []).append(carried)
        for category in CATEGORIES:
            if getattr(flags, category):
                tally.flagged[category] += 1
                shown = tally.examples.setdefault(category, [])
                if len(shown) < examples:
                    shown.append(
                        f"{reference.code}: {excerpt(texts[reference.note_id], reference)}"
                    )
        if flags.any:
            tally.flagged["any"] += 1
            for cue in flags.cues:
                tally.cues[cue.casefold()] += 1
    return tallies, seconds, sum(len(text) for text in texts.values())


def codes_flagged_everywhere(tally: Tally, category: str | None) -> int:
    """Gold codes all of whose references carry `category` (None: any flag)."""
    return sum(
        all((category in carried) if category else bool(carried) for carried in references)
        for references in tally.code_flags.values()
    )


def share(count: int, total: int) -> str:
    return f"{count} ({count / total:.1%})" if total else "0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--path",
        default=None,
        help="CodiEsp root (unset: $PLANT_ICD_CODIESP, then ../shared/codiesp)",
    )
    parser.add_argument("--splits", default="train,dev", help="comma-separated annotated splits")
    parser.add_argument("--examples", type=int, default=5, help="examples shown per category")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    root = locate_codiesp(args.path, download=False)
    rules = ContextRules.for_language("es")

    rows: list[list[str]] = []
    code_rows: list[list[str]] = []
    sections: list[str] = []
    cue_totals: Counter[str] = Counter()
    timing: list[str] = []
    for split in [name.strip() for name in args.splits.split(",") if name.strip()]:
        tallies, seconds, chars = tally_split(root, split, rules, args.examples)
        timing.append(f"{split}: {chars:,} characters read in {seconds:.2f} s")
        for label, tally in tallies.items():
            total = tally.references
            rows.append(
                [f"{split} {label}", str(total)]
                + [share(tally.flagged[name], total) for name in (*CATEGORIES, "any")]
            )
            codes = len(tally.code_flags)
            code_rows.append(
                [f"{split} {label}", str(codes)]
                + [
                    share(codes_flagged_everywhere(tally, name), codes)
                    for name in (*CATEGORIES, None)
                ]
            )
            cue_totals.update(tally.cues)
            for category in CATEGORIES:
                shown = tally.examples.get(category, [])
                if shown:
                    sections.append(f"**{split} {label}, {category}**\n")
                    sections.append("\n".join(f"- {line}" for line in shown) + "\n")

    report = [
        "# Context rules on the coders' CodiEsp evidence",
        "",
        f"Command: `{command_line()}`",
        "",
        facts_list(machine_facts(["plant-icd"])),
        "",
        markdown_table(
            ["split / label", "references", *CATEGORIES, "any flag"],
            rows,
        ),
        "",
        "Gold (note, code) pairs whose every reference is flagged (what a rule demoting codes "
        "with only flagged evidence would push down):",
        "",
        markdown_table(
            ["split / label", "gold codes", *CATEGORIES, "any flag"],
            code_rows,
        ),
        "",
        "Cues that flag most references (all splits and labels):",
        "",
        markdown_table(
            ["cue", "references"], [[cue, str(n)] for cue, n in cue_totals.most_common(15)]
        ),
        "",
        "Reading speed: " + "; ".join(timing),
        "",
        "Examples (the reference in [[ ]]):",
        "",
        *sections,
    ]
    emit("\n".join(report), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
