"""A tiny bundle whose graph is a real exported PlantClassifier with a first stage (two-stage
decoding), over bundle_factory's tokenizer, codes and metadata; random weights."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.bundle import load_bundle, write_bundle
from model.tokenizer import NoteTokenizer
from tests.model.bundle_factory import DEFAULT_CODES, build_tiny_bundle

# Three codes no keyword drives, so a shortlist of a few codes leaves some out.
SHORTLIST_CODES = [*DEFAULT_CODES, "Z00.0", "Z01.1", "Z02.2"]
TOP_K = 2


def build_shortlist_bundle(
    directory: str | Path,
    *,
    size: int = 3,
    min_train_notes: int = 0,
    codes: Sequence[str] = SHORTLIST_CODES,
) -> tuple[Path, Any]:
    """The bundle directory and the torch PlantClassifier exported into it (eval mode). The
    factory's train counts are 10, 11, ... in code order, so `min_train_notes` = 10 + i forces
    the codes from index i on."""
    import torch

    from model.nn.config import build_config
    from model.nn.export import export_onnx
    from model.nn.network import PlantClassifier

    bundle_dir = build_tiny_bundle(directory, codes, top_k=TOP_K)
    bundle = load_bundle(bundle_dir)
    tokenizer = NoteTokenizer.load(bundle.tokenizer_path)
    torch.manual_seed(0)
    config = build_config(
        vocab_size=tokenizer.vocab_size,
        n_codes=len(codes),
        **{"emb_dim": 12, "hidden_dim": 16, "chunk_len": 5, "window": 8, "inattention_k": 3},
        **{"l2r_dim": 4, "laat_dim": 8, "top_k_export": TOP_K, "pad_id": tokenizer.pad_id},
    )
    model = PlantClassifier(config)
    with torch.no_grad():  # a first stage that spreads the codes out
        model.decoder.first_stage.score.weight.normal_(0.0, 1.0)
        model.decoder.output_bias.normal_(0.0, 1.0)
    model.set_mutual_information(torch.rand(tokenizer.vocab_size, len(codes)))
    graph = export_onnx(model.eval(), bundle_dir / "build" / "model.onnx", top_k=TOP_K)
    metadata = replace(
        bundle.metadata,
        config=config.to_dict(),
        shortlist={"size": size, "min_train_notes": min_train_notes},
    )
    write_bundle(bundle_dir, metadata, graph, bundle.tokenizer_path)
    graph.unlink()
    graph.parent.rmdir()
    return bundle_dir, model
