"""A tiny but complete PLANT bundle for tests: real tokenizer, real ONNX graph, real bundle.json.

The graph is hand-built with `onnx.helper` and honours the export contract: logits are the masked
mean of a fixed embedding table E[ids] (V, C) plus a bias, top_codes the TopK of the logits, and
top_attention each top code's softmax over the valid positions of E[ids][:, :, code].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model.bundle import FORMAT_VERSION, BundleMetadata, package_versions, write_bundle
from model.tokenizer import NoteTokenizer

# Each code gets the words that drive it (English and Spanish), in code order.
DEFAULT_CODES: dict[str, tuple[str, ...]] = {
    "R50.9": ("fever", "fiebre"),
    "R05": ("cough", "tos"),
    "I10": ("hypertension", "hipertensión"),
    "E11.9": ("diabetes",),
    "R07.9": ("pain", "dolor"),
    "J18.9": ("pneumonia", "neumonía"),
}
_FILLER = [
    *("patient", "admitted", "with", "history", "of", "and", "the", "was", "treated", "at"),
    *("hospital", "today", "presents", "chest"),
    *("paciente", "ingresado", "con", "antecedentes", "de", "y", "el", "fue", "tratado", "en"),
    *("hoy", "presenta", "torácico"),
]
KEYWORD_LOGIT = 4.0
BIAS = -1.0


def synthetic_notes(
    keywords: Sequence[Sequence[str]], n_notes: int = 60, seed: int = 0
) -> list[str]:
    """Short bilingual notes mixing filler words and code keywords, fixed by `seed`."""
    rng = np.random.default_rng(seed)
    # Codes without keywords still get notes with clinical words in them.
    vocabulary = [word for words in keywords for word in words] or [
        word for words in DEFAULT_CODES.values() for word in words
    ]
    notes = []
    for _ in range(n_notes):
        words = list(rng.choice(_FILLER, size=int(rng.integers(6, 14))))
        words += list(rng.choice(vocabulary, size=int(rng.integers(1, 3))))
        rng.shuffle(words)
        notes.append(" ".join(str(word) for word in words).capitalize() + ".")
    return notes


def _graph(embedding: np.ndarray, bias: np.ndarray, top_k: int) -> onnx.ModelProto:
    """embedding: float32 (V, C); bias: float32 (C,)."""
    n_codes = embedding.shape[1]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["emb"], axis=0),  # (B, T, C)
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),  # (B, T)
        helper.make_node("Unsqueeze", ["mask", "axis2"], ["mask_btc"]),  # (B, T, 1)
        helper.make_node("Mul", ["emb", "mask_btc"], ["emb_masked"]),  # (B, T, C)
        helper.make_node("ReduceSum", ["emb_masked", "axis1"], ["summed"], keepdims=0),  # (B, C)
        helper.make_node("ReduceSum", ["mask", "axis1"], ["count"], keepdims=1),  # (B, 1)
        helper.make_node("Max", ["count", "one"], ["count_safe"]),  # (B, 1)
        helper.make_node("Div", ["summed", "count_safe"], ["mean"]),  # (B, C)
        helper.make_node("Add", ["mean", "bias"], ["logits"]),  # (B, C)
        helper.make_node("TopK", ["logits", "k"], ["top_values", "top_codes"], axis=1),  # (B, K)
        # Attention: softmax over valid positions only; padding gets -1e9 then exactly 0.
        helper.make_node("Transpose", ["emb"], ["emb_bct"], perm=[0, 2, 1]),  # (B, C, T)
        helper.make_node("Unsqueeze", ["mask", "axis1"], ["mask_b1t"]),  # (B, 1, T)
        helper.make_node("Sub", ["mask_b1t", "one"], ["mask_off"]),  # (B, 1, T): 0 valid, -1 pad
        helper.make_node("Mul", ["mask_off", "big"], ["penalty"]),  # (B, 1, T)
        helper.make_node("Add", ["emb_bct", "penalty"], ["scores"]),  # (B, C, T)
        helper.make_node("Softmax", ["scores"], ["soft"], axis=2),  # (B, C, T)
        helper.make_node("Mul", ["soft", "mask_b1t"], ["attention"]),  # (B, C, T)
        helper.make_node("OneHot", ["top_codes", "depth", "onehot_values"], ["pick"], axis=-1),
        helper.make_node("MatMul", ["pick", "attention"], ["top_attention"]),  # (B, K, T)
    ]
    initializers = [
        numpy_helper.from_array(embedding.astype(np.float32), "E"),
        numpy_helper.from_array(bias.astype(np.float32), "bias"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(1e9, dtype=np.float32), "big"),
        numpy_helper.from_array(np.array([top_k], dtype=np.int64), "k"),
        numpy_helper.from_array(np.array(n_codes, dtype=np.int64), "depth"),
        numpy_helper.from_array(np.array([0.0, 1.0], dtype=np.float32), "onehot_values"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_plant",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        outputs=[
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_codes]),
            helper.make_tensor_value_info("top_codes", TensorProto.INT64, ["batch", top_k]),
            helper.make_tensor_value_info(
                "top_attention", TensorProto.FLOAT, ["batch", top_k, "tokens"]
            ),
        ],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # old enough for any onnxruntime the project supports
    onnx.checker.check_model(model)
    return model


def build_tiny_bundle(
    directory: str | Path,
    codes: Sequence[str] | None = None,
    *,
    top_k: int | None = None,
    max_tokens: int = 32,
    per_code_thresholds: Sequence[float] | None = None,
    seed: int = 0,
    code_system: str = "icd10cm",
) -> Path:
    """Write a complete bundle into `directory` and return it.

    `codes` defaults to DEFAULT_CODES; a code there keeps its keywords, any other code gets none
    (its logits are small noise). `top_k` defaults to min(3, n_codes), smaller than n_codes so
    tests see codes without highlights. `code_system` is what bundle.json declares
    (`icd10cm+icd10pcs` for a model of diagnoses and procedures).
    """
    bundle_dir = Path(directory)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    code_list = list(DEFAULT_CODES) if codes is None else list(codes)
    keywords = [DEFAULT_CODES.get(code, ()) for code in code_list]
    n_codes = len(code_list)
    k = min(3, n_codes) if top_k is None else top_k

    tokenizer = NoteTokenizer.train(synthetic_notes(keywords, seed=seed), vocab_size=300)
    tokenizer_path = tokenizer.save(bundle_dir / "build_tokenizer.json")

    rng = np.random.default_rng(seed)
    embedding = rng.normal(0.0, 0.1, size=(tokenizer.vocab_size, n_codes)).astype(np.float32)
    for code_index, words in enumerate(keywords):
        for word in words:
            for token_id in tokenizer.encode(word).ids.tolist():
                embedding[token_id, code_index] = KEYWORD_LOGIT
    bias = np.full(n_codes, BIAS, dtype=np.float32)
    graph_path = bundle_dir / "build_model.onnx"
    onnx.save(_graph(embedding, bias, k), str(graph_path))

    thresholds = (
        [round(0.3 + 0.1 * (index % 4), 2) for index in range(n_codes)]
        if per_code_thresholds is None
        else list(per_code_thresholds)
    )
    metadata = {
        "format_version": FORMAT_VERSION,
        "kind": "plant",
        "name": "tiny-plant",
        "version": "0.0.1-test",
        "created_at": "2024-01-01T00:00:00Z",
        "config": {
            "encoder": {"kind": "embedding-bag", "vocab_size": tokenizer.vocab_size},
            "n_codes": n_codes,
            "top_k_export": k,
        },
        "codes": [
            {"code": code, "description": f"Test code {code} ({', '.join(words) or 'no words'})"}
            for code, words in zip(code_list, keywords, strict=True)
        ],
        "code_system": code_system,
        "thresholds": {"global_threshold": 0.5, "per_code": thresholds, "min_positives": 2},
        "max_tokens": max_tokens,
        "top_k_export": k,
        "train_code_counts": [10 + index for index in range(n_codes)],
        "corpus": {
            "name": "synthetic",
            "split": "train",
            "lang": "en+es",
            "codes": "all",
            "fingerprint": "0" * 64,
        },
        "dev_metrics": {"micro_f1": 0.5},
        "training": {"stages": ["handmade"], "seconds": {"handmade": 0.0}, "seed": seed},
        "package_versions": package_versions(["numpy", "onnxruntime", "tokenizers"]),
    }
    write_bundle(bundle_dir, BundleMetadata(**metadata), graph_path, tokenizer_path)
    graph_path.unlink()
    tokenizer_path.unlink()
    return bundle_dir


def graph_parameters(bundle_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The embedding table E (V, C) and bias (C,) inside a tiny bundle's graph."""
    model = onnx.load(str(Path(bundle_dir) / "model.onnx"))
    tensors = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    return tensors["E"], tensors["bias"]


def _threshold_tree(feature: int, threshold: float, low: float, high: float) -> onnx.ModelProto:
    """A one-split TreeEnsembleRegressor over the fusion features: `low` if x <= t else `high`."""
    from model.fusion import COMBINER_INPUT, COMBINER_OUTPUT, FEATURES

    node = helper.make_node(
        "TreeEnsembleRegressor",
        [COMBINER_INPUT],
        [COMBINER_OUTPUT],
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function="SUM",
        base_values=[0.0],
        nodes_treeids=[0, 0, 0],
        nodes_nodeids=[0, 1, 2],
        nodes_featureids=[feature, 0, 0],
        nodes_values=[threshold, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 0, 0],
        nodes_falsenodeids=[2, 0, 0],
        nodes_missing_value_tracks_true=[1, 0, 0],
        target_treeids=[0, 0],
        target_nodeids=[1, 2],
        target_ids=[0, 0],
        target_weights=[low, high],
    )
    graph = helper.make_graph(
        [node],
        "combiner",
        [helper.make_tensor_value_info(COMBINER_INPUT, TensorProto.FLOAT, ["rows", len(FEATURES)])],
        [helper.make_tensor_value_info(COMBINER_OUTPUT, TensorProto.FLOAT, ["rows", 1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8
    return model


# Codes only the lexicon knows (the graph never scores them), with the phrase that names them.
FUSION_ONLY_CODES = {"K35.80": "apendicitis aguda"}


def add_fusion(
    bundle_dir: str | Path,
    *,
    context_language: str | None = "es",
    uses_network: bool = False,
    negated_only_factor: float | None = None,
) -> Path:
    """Turn a tiny bundle into a fused one: every keyword of DEFAULT_CODES and each phrase of
    FUSION_ONLY_CODES is a lexicon mention (weight 0.8), and the combiner scores a candidate
    high exactly when a lexicon match names it (evidence_max_weight > 0.5). `uses_network`: the
    bundle says its combiner reads the network's logit (the tree still splits on the lexicon).
    `negated_only_factor`: the bundle's demotion of negated-only candidates (None: not recorded,
    as in bundles written before it existed)."""
    from model.bundle import load_bundle
    from model.fusion import COMBINER_FILE, FEATURES, LEXICON_FILE, NEIGHBOURS_FILE
    from model.lexicon import MentionLexicon, MentionLink, MentionTrie
    from model.neighbours import NeighbourIndex
    from model.text import phrase_key

    bundle_dir = Path(bundle_dir)
    metadata = load_bundle(bundle_dir).metadata.to_dict()
    network_codes = [entry["code"] for entry in metadata["codes"]]
    mentions = {
        phrase_key(word): [MentionLink(code, 0.8, 5, 4)]
        for code, words in DEFAULT_CODES.items()
        if code in network_codes
        for word in words
    }
    mentions |= {
        phrase_key(text): [MentionLink(code, 0.8, 2, 2)] for code, text in FUSION_ONLY_CODES.items()
    }
    work = bundle_dir / "fusion-build"
    work.mkdir(exist_ok=True)
    MentionLexicon({"evidence": MentionTrie(mentions)}).save(work / LEXICON_FILE)
    NeighbourIndex.build(
        ["fiebre y tos", "dolor toracico e hipertension"], [["R50.9", "R05"], ["R07.9", "I10"]]
    ).save(work / NEIGHBOURS_FILE)
    onnx.save(
        _threshold_tree(FEATURES.index("evidence_max_weight"), 0.5, -3.0, 3.0),
        str(work / COMBINER_FILE),
    )
    extra = list(FUSION_ONLY_CODES)
    n_codes = len(network_codes) + len(extra)
    metadata |= {
        "network_codes": len(network_codes),
        "codes": metadata["codes"] + [{"code": c, "description": f"Test code {c}"} for c in extra],
        "train_code_counts": metadata["train_code_counts"] + [0] * len(extra),
        "thresholds": {"global_threshold": 0.5, "per_code": [0.5] * n_codes, "min_positives": 2},
        "fusion": {
            "files": {},
            "features": list(FEATURES),
            "context_language": context_language,
            "network_candidates": 0,
            "uses_network": uses_network,
            "report": {},
        },
    }
    if negated_only_factor is not None:
        metadata["fusion"]["negated_only_factor"] = negated_only_factor
    write_bundle(
        bundle_dir,
        BundleMetadata.from_dict(metadata),
        bundle_dir / "model.onnx",
        bundle_dir / "tokenizer.json",
        {name: work / name for name in (LEXICON_FILE, NEIGHBOURS_FILE, COMBINER_FILE)},
    )
    for path in work.iterdir():
        path.unlink()
    work.rmdir()
    return bundle_dir
