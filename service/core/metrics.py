"""Prometheus metrics of one app, in a registry of its own (so tests can build many apps).

Request latency by route template and status, inference latency, batch size, codes per note,
feedback outcomes, database write errors and a model info gauge. Health routes are not counted.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Routes a probe calls every few seconds: they would drown the API's own latency distribution.
UNMEASURED_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

_LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_CODES_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55)


class Metrics:
    """Every metric the service exports, registered in `self.registry`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "plant_icd_http_request_duration_seconds",
            "HTTP request latency by route template, method and status",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_latency = Histogram(
            "plant_icd_inference_duration_seconds",
            "Model inference time per call (tokenise, graph, highlights), excluding queueing",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_queue = Histogram(
            "plant_icd_inference_wait_seconds",
            "Time a request waited for an inference slot",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "plant_icd_batch_size_notes",
            "Notes per inference call",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.codes_per_note = Histogram(
            "plant_icd_codes_per_note",
            "Codes at or above their decision threshold per note",
            buckets=_CODES_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "plant_icd_predictions_recorded",
            "Predictions committed to the audit log",
            registry=self.registry,
        )
        self.feedback = Counter(
            "plant_icd_feedback_decisions",
            "Coder feedback decisions recorded, by outcome",
            ["decision"],
            registry=self.registry,
        )
        self.db_write_errors = Counter(
            "plant_icd_db_write_errors",
            "Database writes that failed (the client got 503 and no prediction)",
            ["operation"],
            registry=self.registry,
        )
        self.tokens_in_flight = Gauge(
            "plant_icd_inference_tokens_in_flight",
            "Note tokens admitted for inference and not yet answered (estimated, upper bound)",
            registry=self.registry,
        )
        self.inference_rejected = Counter(
            "plant_icd_inference_rejected",
            "Prediction requests refused with 503 because the inference queue was full",
            registry=self.registry,
        )
        self.model_info = Gauge(
            "plant_icd_model_info",
            "The served model bundle (value 1)",
            ["name", "version"],
            registry=self.registry,
        )
        for decision in ("accepted", "rejected", "added"):
            self.feedback.labels(decision=decision)
        for operation in ("prediction", "feedback"):
            self.db_write_errors.labels(operation=operation)

    def render(self) -> bytes:
        return generate_latest(self.registry)
