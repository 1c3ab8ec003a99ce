"""The network's configuration: `PlantConfig` (with its `EncoderConfig`) is the only input to
the PLANT network, and `build_config` makes one from flat fields. The defaults are the demo-sized
network; training presets (training/presets.py) state only the fields that differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ENCODER_KINDS = ("awd_lstm", "transformer")
BRANCHES = ("laat", "planted", "static")


@dataclass
class EncoderConfig:
    kind: str = "awd_lstm"  # "awd_lstm" | "transformer"
    vocab_size: int = 8000
    emb_dim: int = 128
    hidden_dim: int = 256
    n_layers: int = 2
    embedding_dropout: float = 0.05  # whole word rows of the embedding matrix
    input_dropout: float = 0.25  # locked (same mask at every position) on the embeddings
    hidden_dropout: float = 0.15  # locked, between LSTM layers
    weight_dropout: float = 0.2  # DropConnect on hidden-to-hidden weights
    output_dropout: float = 0.1  # locked, on the last layer's states
    chunk_len: int = 128  # tokens read per chunk; the hidden state is carried across chunks
    hf_path: str = ""  # local Hugging Face model directory (transformer only)
    pad_id: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder kind must be one of {ENCODER_KINDS}, got {self.kind!r}")
        if self.vocab_size < 1 or self.emb_dim < 1 or self.hidden_dim < 1 or self.n_layers < 1:
            raise ValueError("vocab_size, emb_dim, hidden_dim and n_layers must be positive")
        for name in (
            "embedding_dropout",
            "input_dropout",
            "hidden_dropout",
            "weight_dropout",
            "output_dropout",
        ):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.chunk_len < 1:
            raise ValueError(f"chunk_len must be positive, got {self.chunk_len}")
        if self.kind == "transformer" and not self.hf_path:
            raise ValueError("a transformer encoder needs hf_path (a local model directory)")


@dataclass
class PlantConfig:
    encoder: EncoderConfig
    n_codes: int
    l2r_dim: int = 64  # f: L2R factor size
    laat_dim: int = 128  # p: LAAT projection size
    inattention_k: int = 32  # positions kept per code, branch and window
    window: int = 256  # attention window in tokens (stateful decoder)
    branches: tuple[str, ...] = ("laat", "planted", "static")
    top_k_export: int = 50
    pad_id: int = 0
    # The cheap first stage (model/nn/shortlist.py): a linear scorer over the pooled encoder
    # states that picks the codes the label-wise attention decodes at serving time.
    first_stage: bool = True

    def __post_init__(self) -> None:
        self.branches = tuple(self.branches)
        if not self.branches or len(set(self.branches)) != len(self.branches):
            raise ValueError(f"branches must be non-empty and distinct, got {self.branches}")
        unknown = [name for name in self.branches if name not in BRANCHES]
        if unknown:
            raise ValueError(f"unknown branches {unknown}; choose from {BRANCHES}")
        for name in ("n_codes", "l2r_dim", "laat_dim", "inattention_k", "window", "top_k_export"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pad_id != self.encoder.pad_id:
            raise ValueError(
                f"pad_id {self.pad_id} differs from encoder.pad_id {self.encoder.pad_id}"
            )

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["branches"] = list(self.branches)  # JSON has no tuples
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PlantConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown PlantConfig keys: {unknown}")
        encoder_values = dict(values["encoder"])
        encoder_known = {f.name for f in fields(EncoderConfig)}
        unknown = sorted(set(encoder_values) - encoder_known)
        if unknown:
            raise ValueError(f"unknown EncoderConfig keys: {unknown}")
        rest = {k: v for k, v in values.items() if k != "encoder"}
        # A config written before the first stage existed describes a network without one.
        rest.setdefault("first_stage", False)
        if "branches" in rest:
            rest["branches"] = tuple(rest["branches"])
        return cls(encoder=EncoderConfig(**encoder_values), **rest)


def build_config(vocab_size: int, n_codes: int, **fields_: Any) -> PlantConfig:
    """A PlantConfig from flat fields: each names an EncoderConfig or PlantConfig field (`pad_id`
    sets both); the rest keep their defaults. Training presets (training/presets.py) are such
    field sets."""
    values = {**fields_, "vocab_size": vocab_size, "n_codes": n_codes}
    encoder_names = {f.name for f in fields(EncoderConfig)}
    plant_names = {f.name for f in fields(PlantConfig)} - {"encoder"}
    unknown = sorted(set(values) - encoder_names - plant_names)
    if unknown:
        raise ValueError(f"unknown config fields: {unknown}")
    encoder = EncoderConfig(**{k: v for k, v in values.items() if k in encoder_names})
    return PlantConfig(encoder=encoder, **{k: v for k, v in values.items() if k in plant_names})
