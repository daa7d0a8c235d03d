"""Prometheus metrics: requests by outcome, latency, injections by pod kind, internal errors.

Under gunicorn each worker is a process, so when PROMETHEUS_MULTIPROC_DIR is set (the `serve` command
sets it) /metrics aggregates every worker's samples.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "wandb_kfp_webhook_admission_requests_total",
    "AdmissionReview requests answered, by outcome (injected, skipped, error, invalid).",
    ["outcome"],
)
LATENCY = Histogram(
    "wandb_kfp_webhook_admission_duration_seconds",
    "Time to answer one AdmissionReview, from body read to response built.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
INJECTIONS = Counter(
    "wandb_kfp_webhook_injections_total",
    "Pods injected, by pod kind.",
    ["kind"],
)
INTERNAL_ERRORS = Counter(
    "wandb_kfp_webhook_internal_errors_total",
    "Internal errors; each one admitted its pod unchanged.",
)


def record(outcome: str, kind: str, seconds: float) -> None:
    REQUESTS.labels(outcome=outcome).inc()
    LATENCY.observe(seconds)
    if outcome == "injected":
        INJECTIONS.labels(kind=kind).inc()
    elif outcome == "error":
        INTERNAL_ERRORS.inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition of all workers' metrics (or this process's, outside multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
