"""Evidence against the coders' own spans, by source: attention only, lexicon only and merged (as
served), each with the context rules (negation, uncertainty, family history) on and off, over one
or more bundles (a D and a P bundle together give CodiEsp-X "D and P combined").

For each bundle and setting the dev notes are coded once; the codes above the shipped thresholds
keep the served evidence (merged), its lexicon items only, or the attention phrases the network
alone gives for the same code (the merged list drops attention phrases that overlap a lexicon
match; a code outside the network's exported top K has none). Scored with the
CodiEsp-X rule (training/evidence.py): X precision/recall/F1 and hit@1 for correctly predicted
codes, then hit@1 of the served evidence by the source of each code's first item. With
`--lang en` the coders' Spanish references are projected onto the English translation
(training/projection.py, the aligner fitted on training and background notes only), since the X
offsets point into the Spanish text. Usage:

    python benchmarks/evidence_sources.py --model bundles/demo-d-es --model bundles/demo-p-es
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from _common import command_line, load_average, markdown_table

from model.bundle import load_bundle
from model.fusion import FusedScorer
from model.lexicon_evidence import EVIDENCE_PRIORITY, span_sources
from model.prediction import CodePrediction
from model.runtime import OnnxPredictor
from training.corpora.base import Document, EvidenceReference, EvidenceSpan
from training.corpora.codiesp import locate_codiesp, read_codiesp_references
from training.datasets import CorpusSpec
from training.evidence import CodeEvidence, evidence_report, hit_at_one, x_scores
from training.fusion import english_translator
from training.projection import project_spans

SOURCES = ("merged (as served)", "lexicon only", "attention only")


def _evidence(
    documents: Sequence[Document],
    predictions: Sequence[Sequence[CodePrediction]],
    label: str,
    evidence_from: Sequence[Sequence[CodePrediction]] | None = None,
    source: str | None = None,
) -> list[CodeEvidence]:
    """The codes above threshold in `predictions`, each with its evidence items of `source`
    (None: every item) as `evidence_from` gives them for that code (default: `predictions`)."""
    found: list[CodeEvidence] = []
    for index, (document, ranked) in enumerate(zip(documents, predictions, strict=True)):
        lookup = {item.code: item for item in (evidence_from or predictions)[index]}
        for prediction in ranked:
            if not prediction.above_threshold:
                continue
            items = lookup[prediction.code].highlights if prediction.code in lookup else ()
            spans = [(h.start, h.end) for h in items if source is None or h.source == source]
            found.append(CodeEvidence(document.id, label, prediction.code, tuple(spans)))
    return found


def first_items_by_source(
    model: Path,
    documents: Sequence[Document],
    predictions: Sequence[Sequence[CodePrediction]],
    label: str,
) -> dict[str, list[CodeEvidence]]:
    """The codes above threshold with their first evidence item only, grouped by where that item
    comes from: a lexicon source (evidence, catalogue, mined, partial) or attention."""
    scorer = FusedScorer(load_bundle(model))
    groups: dict[str, list[CodeEvidence]] = {}
    for document, ranked in zip(documents, predictions, strict=True):
        sources = span_sources(scorer.signals(document.text))
        for prediction in ranked:
            if not prediction.above_threshold or not prediction.highlights:
                continue
            first = prediction.highlights[0]
            source = sources.get((prediction.code, first.start, first.end), first.source)
            item = CodeEvidence(document.id, label, prediction.code, ((first.start, first.end),))
            groups.setdefault(source, []).append(item)
    return groups


def english_references(root: Path, codes: str) -> list[EvidenceReference]:
    """The dev X references projected from the Spanish notes onto their English translation."""
    spanish_spec = CorpusSpec("codiesp", str(root), lang="es", codes=codes)
    english_spec = replace(spanish_spec, lang="en")
    _, translator = english_translator(english_spec, english_spec.load("train"))
    references = read_codiesp_references(root, "dev", codes=codes)
    english = {document.id: document for document in english_spec.load("dev")}
    projected: list[EvidenceReference] = []
    for spanish in spanish_spec.load("dev"):
        mine = [ref for ref in references if ref.note_id == spanish.id]
        if spanish.id not in english or not mine:
            continue
        spans = tuple(EvidenceSpan(ref.code, ref.start, ref.end) for ref in mine)
        moved = project_spans(replace(spanish, spans=spans), english[spanish.id], translator)
        labels = {ref.code: ref.label for ref in mine}
        projected += [
            EvidenceReference(
                spanish.id, labels[span.code], span.code, ((span.start, span.end),), ""
            )
            for span in moved.spans
        ]
    return projected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--path", type=Path, default=None, help="CodiEsp folder")
    parser.add_argument("--lang", default="es", choices=["es", "en"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--codes", choices=["D", "P"], help="default: each bundle's own")
    args = parser.parse_args()
    root = locate_codiesp(args.path)
    labels = {
        model: args.codes or load_bundle(model).metadata.corpus["codes"] for model in args.model
    }
    references: list[EvidenceReference] = []
    for label in labels.values():
        if args.lang == "en":
            references += english_references(root, label)
        else:
            references += read_codiesp_references(root, "dev", codes=label)
    rows = []
    firsts: dict[str, list[CodeEvidence]] = {}  # served, context rules on: by first item's source
    network: dict[Path, list[list[CodePrediction]]] = {}  # the context rules do not touch it
    for context in (True, False):
        found: dict[str, list[CodeEvidence]] = {name: [] for name in SOURCES}
        for model, label in labels.items():
            spec = CorpusSpec("codiesp", str(root), lang=args.lang, codes=label)
            documents = spec.load("dev")
            texts = [document.text for document in documents]
            served = OnnxPredictor(model, args.threads, context_rules=context).predict(texts)
            # The network's own attention phrases for the same codes (the merged list drops the
            # ones that overlap a lexicon match).
            if model not in network:
                network[model] = OnnxPredictor(model, args.threads, fused=False).predict(texts)
            found[SOURCES[0]] += _evidence(documents, served, label)
            if context:
                for source, items in first_items_by_source(model, documents, served, label).items():
                    firsts.setdefault(source, []).extend(items)
            found[SOURCES[1]] += _evidence(documents, served, label, source="lexicon")
            found[SOURCES[2]] += _evidence(documents, served, label, network[model], "attention")
        for name in SOURCES:
            report = evidence_report(
                x_scores(found[name], references), hit_at_one(found[name], references)
            )
            for label, values in report.items():
                if values["gold"]:
                    rows.append(_row(name, context, label, values))
    headers = ["evidence", "context rules", "label", "X P", "X R", "X F1", "hit@1", "overlap@1"]
    print(f"`{command_line()}` (load {load_average()})\n")
    print(markdown_table(headers, rows))
    print("\nThe served evidence (context rules on) by where its first item comes from:\n")
    print(
        markdown_table(
            ["first item", "correct codes", "hit@1", "overlap@1"], _by_source(firsts, references)
        )
    )


def _by_source(
    firsts: dict[str, list[CodeEvidence]], references: Sequence[EvidenceReference]
) -> list[list[str]]:
    rows = []
    for source in [*EVIDENCE_PRIORITY, "attention"]:
        hits = hit_at_one(firsts.get(source, []), references)["DP"]
        if hits.correct_codes:
            rows.append(
                [
                    source,
                    str(hits.correct_codes),
                    f"{hits.rule_hits / hits.correct_codes:.3f}",
                    f"{hits.overlap_hits / hits.correct_codes:.3f}",
                ]
            )
    return rows


def _row(name: str, context: bool, label: str, values: dict[str, float | int]) -> list[str]:
    return [
        name,
        "on" if context else "off",
        label,
        *(f"{float(values[key]):.3f}" for key in ("precision", "recall", "f1")),
        f"{float(values['hit_at_1_rule']):.3f}",
        f"{float(values['hit_at_1_overlap']):.3f}",
    ]


if __name__ == "__main__":
    main()
