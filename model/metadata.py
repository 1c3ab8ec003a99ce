"""bundle.json, the contract between training and serving: one typed record per model kind,
checked when it is built and when it is read.

`ModelMetadata` holds what every saved model declares (codes, thresholds, corpus, metrics);
`BundleMetadata` adds the served PLANT bundle's graph, tokenizer and fusion; `BaselineMetadata`
the TF-IDF baseline's pipeline file. Writers build these records, never raw dicts; readers get
them back validated (model/bundle.py does the file I/O and checksums). No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypedDict

# A module, its functions looked up when called: a long training run imports this file late
# (through model.runtime), beside the model.codes it loaded at its start.
from model import codes as code_formats
from model.codes import CodeSystem
from model.thresholds import Thresholds, ThresholdsInfo

FORMAT_VERSION = 3
BUNDLE_KIND = "plant"
BASELINE_KIND = "tfidf-logreg"
# Which format versions this code reads, per kind. PLANT version 1 (no fusion, every code a
# network output) and 2 (no shortlist, fp32) still load unchanged and decode every code;
# version 3 adds the shortlist (`ShortlistInfo`) and `precision`. Baseline version 1 had no
# checksum of the pickled pipeline it unpickles, so it is refused.
READABLE_VERSIONS: dict[str, tuple[int, ...]] = {BUNDLE_KIND: (1, 2, 3), BASELINE_KIND: (2, 3)}

# The exported graph's interface (model/nn/export.py writes it, model/runtime.py reads it):
# inputs int64 [batch, tokens]; outputs logits [batch, codes], top_codes [batch, K],
# top_attention [batch, K, tokens].
GRAPH_INPUTS = ("input_ids", "attention_mask")
GRAPH_OUTPUTS = ("logits", "top_codes", "top_attention")
# A graph with a first stage (a bundle with a `shortlist` section) also takes forced_codes bool
# [batch, codes] (codes decoded whatever the first stage says) and shortlist_size int64 [] (S),
# and also returns shortlist int64 [batch, S'] (the decoded codes, S' = min(codes, max(S, K,
# most forced))) and first_stage float32 [batch, codes] (the first stage's logits).
SHORTLIST_INPUTS = ("forced_codes", "shortlist_size")
SHORTLIST_OUTPUTS = ("shortlist", "first_stage")
# S of a new bundle unless its preset says otherwise; S >= the number of codes decodes them all.
DEFAULT_SHORTLIST_SIZE = 256
# The graph's numeric precision: fp32 as exported, int8 after `plant-icd quantize`.
PRECISIONS = ("fp32", "int8")


class BundleError(Exception):
    """A bundle directory that cannot be served; the message says what is wrong and what to do."""


class CodeEntry(TypedDict):
    code: str
    description: str


class _FusionKeys(TypedDict):
    files: dict[str, str]  # file name in the bundle -> sha256: lexicon, neighbours, combiner
    features: list[str]  # the combiner's input columns, in order (model.fusion.FEATURES)
    context_language: str | None  # context rules (negation...) applied to lexicon matches
    network_candidates: int  # the network's top codes added to each note's candidates
    uses_network: bool  # whether the combiner reads the network logit
    report: dict[str, Any]  # out-of-fold fitting figures


class FusionInfo(_FusionKeys, total=False):
    """The fused model's parts beside the graph (model/fusion.py reads them)."""

    # A candidate every lexicon match of which is negated scores this share of the combiner's
    # probability (model.fusion.demote_negated_only); absent: 1, no demotion.
    negated_only_factor: float


class ShortlistInfo(TypedDict):
    """Two-stage decoding settings of a bundle whose graph has a first stage."""

    size: int  # S: codes decoded per note besides the forced ones (>= codes: all of them)
    # Codes in at least this many training notes are always decoded (0: none), with the
    # fusion's lexicon and neighbour candidates where the bundle has a fusion section.
    min_train_notes: int


class _CorpusKeys(TypedDict):
    name: str
    split: str
    fingerprint: str  # fingerprint_documents() of the training documents


class CorpusInfo(_CorpusKeys, total=False):
    """`training.datasets.CorpusSpec.to_dict()` plus the split read and its fingerprint."""

    path: str
    lang: str
    codes: str  # which code set (e.g. "D", "DP")
    icd_version: int
    split_file: str | None


class TrainingInfo(TypedDict, total=False):
    """How the model was trained: the seed, and per-stage seconds and reports."""

    seed: int
    preset: str
    plant: bool
    attention_weight: float  # the attention loss's weight on evidence spans (0: none)
    seconds: dict[str, float] | float
    stages: list[str]
    lm: dict[str, Any]
    l2r: dict[str, Any] | None
    classifier: list[dict[str, Any]]
    fusion: dict[str, Any]
    # A final refit (train + dev): the train-only bundle it took epochs and thresholds from.
    final: dict[str, Any]
    # `plant-icd quantize`: the fp32 bundle it came from and, where measured, dev MAP of both.
    quantization: dict[str, Any]


def _check_section(name: str, value: object, schema: type) -> None:
    """A TypedDict section: an object with its required keys and no unknown ones."""
    if not isinstance(value, Mapping):
        raise BundleError(f"bundle metadata {name} must be an object, not {value!r}")
    required: frozenset[str] = getattr(schema, "__required_keys__", frozenset())
    known = required | getattr(schema, "__optional_keys__", frozenset())
    missing, unknown = sorted(required - set(value)), sorted(set(value) - known)
    if missing or unknown:
        raise BundleError(
            f"bundle metadata {name} lacks {missing} or has unknown keys {unknown}: re-export "
            "the bundle with this plant-icd"
        )


@dataclass(frozen=True, kw_only=True)
class ModelMetadata:
    """What bundle.json holds for every kind of model, one field per key."""

    # Keys a bundle.json may leave out (their defaults apply).
    OPTIONAL: ClassVar[frozenset[str]] = frozenset(
        {"format_version", "dev_metrics", "package_versions"}
    )

    format_version: int = FORMAT_VERSION
    kind: str
    name: str
    version: str
    created_at: str  # ISO 8601, UTC
    config: dict[str, Any]
    codes: list[CodeEntry]  # in score-column order
    code_system: str  # `model.codes.format_code_systems`, e.g. "icd10cm+icd10pcs"
    thresholds: ThresholdsInfo
    train_code_counts: list[int]  # per code, in score-column order
    corpus: CorpusInfo
    dev_metrics: dict[str, float | None] = field(default_factory=dict)
    training: TrainingInfo
    package_versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def code_systems(self) -> list[CodeSystem]:
        return code_formats.parse_code_systems(self.code_system)

    @property
    def decision_thresholds(self) -> Thresholds:
        return Thresholds.from_json(self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Any:
        """Check the keys, build the record (which validates itself); raise BundleError naming
        what is wrong."""
        known = {f.name for f in fields(cls)}
        missing = sorted(known - cls.OPTIONAL - set(raw))
        if missing:
            raise BundleError(f"bundle metadata lacks keys {missing}: re-export the bundle")
        unknown = sorted(set(raw) - known)
        if unknown:
            raise BundleError(
                f"bundle metadata has unknown keys {unknown}: it was written by a newer "
                "plant-icd; upgrade plant-icd or re-export the bundle"
            )
        return cls(**{key: raw[key] for key in known if key in raw})

    def validate(self) -> None:
        """Check that the per-code lists agree with the code list and each section's shape."""
        if not isinstance(self.codes, list) or not self.codes:
            raise BundleError("bundle metadata must list its codes: re-export the bundle")
        for entry in self.codes:
            if not isinstance(entry, Mapping) or not {"code", "description"} <= set(entry):
                raise BundleError(
                    f"bundle metadata code entry {entry!r} needs 'code' and 'description'"
                )
        n_codes = len(self.codes)
        self._check_thresholds(n_codes)
        if len(self.train_code_counts) != n_codes:
            raise BundleError(
                f"bundle metadata train_code_counts has {len(self.train_code_counts)} values for "
                f"{n_codes} codes: re-export the bundle"
            )
        if not isinstance(self.format_version, int) or isinstance(self.format_version, bool):
            raise BundleError(f"bundle metadata format_version {self.format_version!r} is no int")
        _check_section("corpus", self.corpus, CorpusInfo)
        _check_section("training", self.training, TrainingInfo)
        try:
            code_formats.parse_code_systems(self.code_system)
        except (AttributeError, ValueError) as error:
            raise BundleError(f"bundle metadata {error}: re-export the bundle") from None

    def _check_thresholds(self, n_codes: int) -> None:
        try:
            thresholds = self.decision_thresholds
        except (TypeError, ValueError) as error:
            raise BundleError(
                f"bundle metadata thresholds are unusable ({error}): re-export the bundle"
            ) from None
        if len(thresholds.per_code) != n_codes:
            raise BundleError(
                f"bundle metadata thresholds.per_code has {len(thresholds.per_code)} values for "
                f"{n_codes} codes: re-export the bundle"
            )


@dataclass(frozen=True, kw_only=True)
class BundleMetadata(ModelMetadata):
    """A served PLANT bundle: the common record plus its graph, tokenizer and fusion."""

    OPTIONAL: ClassVar[frozenset[str]] = ModelMetadata.OPTIONAL | {
        "network_codes",
        "fusion",
        "shortlist",
        "precision",
    }
    HASH_KEYS: ClassVar[frozenset[str]] = frozenset({"graph_sha256", "tokenizer_sha256"})

    kind: str = BUNDLE_KIND
    max_tokens: int  # the runtime reads at most this many tokens of a note
    top_k_export: int  # K of the graph's top_codes / top_attention outputs
    graph_sha256: str = ""
    tokenizer_sha256: str = ""
    # The graph scores codes[:network_codes]; the rest only the fusion can propose (codes the
    # lexicon or catalogue names that training never saw). None: every code is a graph output.
    network_codes: int | None = None
    fusion: FusionInfo | None = None
    # None: the graph has no first stage and decodes every code (every bundle before version 3).
    shortlist: ShortlistInfo | None = None
    precision: str = "fp32"  # one of PRECISIONS

    @property
    def n_network_codes(self) -> int:
        return len(self.codes) if self.network_codes is None else self.network_codes

    def validate(self) -> None:
        super().validate()
        n_codes = len(self.codes)
        for key in ("max_tokens", "top_k_export"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise BundleError(f"bundle metadata {key} must be an integer, not {value!r}")
        if self.max_tokens < 1:
            raise BundleError(f"bundle metadata max_tokens must be positive, not {self.max_tokens}")
        n_network = self.n_network_codes
        if not isinstance(n_network, int) or not 1 <= n_network <= n_codes:
            raise BundleError(
                f"bundle metadata network_codes={self.network_codes!r} must lie in 1..{n_codes}"
            )
        if not 1 <= self.top_k_export <= n_network:
            raise BundleError(
                f"bundle metadata top_k_export={self.top_k_export} must lie in 1..{n_network}"
            )
        if n_network < n_codes and self.fusion is None:
            raise BundleError(
                f"bundle metadata lists {n_codes} codes but the graph scores {n_network} and "
                "there is no fusion section to score the rest: re-export the bundle"
            )
        if self.fusion is not None:
            _check_section("fusion", self.fusion, FusionInfo)
            factor = self.fusion.get("negated_only_factor", 1.0)
            if isinstance(factor, bool) or not isinstance(factor, int | float):
                raise BundleError(
                    f"bundle metadata fusion negated_only_factor {factor!r} must be a number"
                )
            # 0 would also flatten the network's ranking of the codes below the candidates
            # (FusedScorer.place puts them under half the lowest candidate's score).
            if not 0.0 < factor <= 1.0:
                raise BundleError(
                    f"bundle metadata fusion negated_only_factor {factor} must lie in (0, 1]"
                )
        self._check_serving_options()

    def _check_serving_options(self) -> None:
        if self.precision not in PRECISIONS:
            raise BundleError(
                f"bundle metadata precision {self.precision!r} is not one of {list(PRECISIONS)}"
            )
        if self.shortlist is None:
            return
        _check_section("shortlist", self.shortlist, ShortlistInfo)
        size, min_notes = self.shortlist["size"], self.shortlist["min_train_notes"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, min_notes)):
            raise BundleError(f"bundle metadata shortlist {self.shortlist} must hold integers")
        if size < 1 or min_notes < 0:
            raise BundleError(
                f"bundle metadata shortlist size={size} must be positive and "
                f"min_train_notes={min_notes} not negative"
            )


@dataclass(frozen=True, kw_only=True)
class BaselineMetadata(ModelMetadata):
    """The TF-IDF baseline: the common record plus the checksum of its pickled pipeline."""

    HASH_KEYS: ClassVar[frozenset[str]] = frozenset({"pipeline_sha256"})

    kind: str = BASELINE_KIND
    pipeline_sha256: str = ""


METADATA_KINDS: dict[str, type[ModelMetadata]] = {
    BUNDLE_KIND: BundleMetadata,
    BASELINE_KIND: BaselineMetadata,
}


def check_version(raw: Mapping[str, Any], where: str) -> type[ModelMetadata]:
    """The record type for `raw`'s kind, once its format_version is one this code reads."""
    kind = raw.get("kind", BUNDLE_KIND)
    record_type = METADATA_KINDS.get(kind)
    if record_type is None:
        raise BundleError(
            f"{where} has kind {kind!r}; this plant-icd reads {sorted(METADATA_KINDS)}"
        )
    version = raw.get("format_version")
    readable = READABLE_VERSIONS[kind]
    if version not in readable:
        older = isinstance(version, int) and version < min(readable)
        raise BundleError(
            f"{where} is a {kind} model written with format_version {version!r}"
            + (" (an older layout)" if older else "")
            + f"; this plant-icd reads format_version {list(readable)}: "
            + ("retrain or re-export it with this plant-icd" if older else "upgrade plant-icd")
        )
    return record_type
