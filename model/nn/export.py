"""ONNX export of a trained PlantClassifier: the graph the runtime serves, returning logits plus
the top-K codes and their attention rows, with dynamic batch and token axes. A network with a
first stage exports two-stage decoding: the decoder runs only for each note's shortlist.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from model.metadata import GRAPH_INPUTS, GRAPH_OUTPUTS, SHORTLIST_INPUTS, SHORTLIST_OUTPUTS
from model.nn.network import PlantClassifier

# Batch and token axes stay symbolic: (ids, mask) [batch, tokens] in; logits [batch, codes],
# top_codes [batch, K], top_attention [batch, K, tokens] out. With a first stage also
# forced_codes [batch, codes] and shortlist_size [] in; shortlist [batch, shortlist] and
# first_stage [batch, codes] out.
_DYNAMIC_AXES = {
    **{name: {0: "batch", 1: "tokens"} for name in GRAPH_INPUTS},
    GRAPH_OUTPUTS[0]: {0: "batch"},
    GRAPH_OUTPUTS[1]: {0: "batch"},
    GRAPH_OUTPUTS[2]: {0: "batch", 2: "tokens"},
}
_SHORTLIST_AXES = {
    SHORTLIST_INPUTS[0]: {0: "batch"},
    SHORTLIST_OUTPUTS[0]: {0: "batch", 1: "shortlist"},
    SHORTLIST_OUTPUTS[1]: {0: "batch"},
}


class _ServingGraph(nn.Module):
    """What is exported: the classifier plus top-K selection, so the runtime ships only K
    attention rows instead of all C."""

    def __init__(self, model: PlantClassifier, top_k: int) -> None:
        super().__init__()
        self.model = model
        self.top_k = top_k

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, attention = self.model(input_ids, attention_mask)  # (B, C), (B, C, T)
        top_codes = logits.topk(self.top_k, dim=1).indices  # (B, K), best first
        rows = top_codes.unsqueeze(-1).expand(-1, -1, attention.size(2))  # (B, K, T)
        top_attention = attention.gather(1, rows)  # (B, K, T)
        return logits, top_codes, top_attention


class _ShortlistGraph(nn.Module):
    """What is exported for a network with a first stage: two-stage decoding
    (`PlantClassifier.shortlisted`), then the top K among the decoded codes, which always
    outrank the rest."""

    def __init__(self, model: PlantClassifier, top_k: int) -> None:
        super().__init__()
        self.model = model
        self.top_k = top_k

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, forced: Tensor, size: Tensor
    ) -> tuple[Tensor, ...]:
        out = self.model.shortlisted(input_ids, attention_mask, forced, size, self.top_k)
        best = out.decoded.topk(self.top_k, dim=1).indices  # (B, K): columns of the shortlist
        top_codes = out.shortlist.gather(1, best)  # (B, K), best first
        rows = best.unsqueeze(-1).expand(-1, -1, out.attention.size(2))  # (B, K, T)
        top_attention = out.attention.gather(1, rows)  # (B, K, T)
        return out.logits, top_codes, top_attention, out.shortlist, out.first_stage


def example_inputs(model: PlantClassifier, top_k: int) -> tuple[Tensor, ...]:
    """Inputs to trace with: two notes, the longer spanning two windows and not a multiple of
    the window, the shorter padded; with a first stage, one forced code and S = K. Only shapes
    matter to the trace."""
    cfg = model.config
    length = cfg.window + 3
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, cfg.encoder.vocab_size, (2, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, length // 2 :] = 0
    input_ids[attention_mask == 0] = cfg.pad_id
    if not cfg.first_stage:
        return input_ids, attention_mask
    forced = torch.zeros(2, cfg.n_codes, dtype=torch.bool)
    forced[0, cfg.n_codes - 1] = True
    return input_ids, attention_mask, forced, torch.tensor(top_k, dtype=torch.int64)


def export_onnx(model: PlantClassifier, path: str | Path, top_k: int = 50, opset: int = 17) -> Path:
    """Write `model` (in eval mode) to `path` as ONNX; returns the path.

    Inputs `input_ids`, `attention_mask` int64 [batch, tokens]; outputs `logits` float32
    [batch, codes], `top_codes` int64 [batch, K] with K = min(top_k, n_codes), `top_attention`
    float32 [batch, K, tokens]. A network with a first stage adds model.metadata's
    SHORTLIST_INPUTS and SHORTLIST_OUTPUTS (two-stage decoding; S is an input). Uses the
    TorchScript exporter (`dynamo=False`): it records the window padding and slicing arithmetic
    symbolically, so the graph is valid for any batch size and length, and it needs no
    onnxscript. Both encoders export (tested).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    k = min(top_k, cfg.n_codes)
    inputs, outputs, axes = list(GRAPH_INPUTS), list(GRAPH_OUTPUTS), dict(_DYNAMIC_AXES)
    serving: nn.Module = _ServingGraph(model, k)
    if cfg.first_stage:
        inputs += SHORTLIST_INPUTS
        outputs += SHORTLIST_OUTPUTS
        axes |= _SHORTLIST_AXES
        serving = _ShortlistGraph(model, k)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript
            # and data-dependent shape guards here; the legacy path gives a correct graph.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            # Our LSTMs start from no initial state (ONNX: zeros of the input's batch), so the
            # graph is batch-size independent; tests run it with other batch sizes.
            warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
            # TracerWarnings come from size checks inside nn.LSTM and transformers that are
            # constant here (layer sizes; every transformer chunk is chunk_len long); the tests
            # run the graph at other batch sizes and lengths against torch.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                serving.eval(),
                example_inputs(model, k),
                str(path),
                dynamo=False,
                input_names=inputs,
                output_names=outputs,
                opset_version=opset,
                do_constant_folding=True,
                dynamic_axes=axes,
            )
    finally:
        model.train(was_training)
    graph = onnx.load(str(path))
    # Shape inference loses K through the Expand feeding GatherElements (and, with a shortlist,
    # through the Gather of top codes); declare it, as the contract says top_codes is
    # [batch, K] and top_attention [batch, K, tokens].
    for output in graph.graph.output[1:3]:
        k_dim = output.type.tensor_type.shape.dim[1]
        k_dim.Clear()
        k_dim.dim_value = k
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return path
