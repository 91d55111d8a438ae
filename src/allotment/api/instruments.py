"""The service's Prometheus instruments (exposed by ``allotment.api.metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["DECISIONS", "LATENCY", "STORE_ERRORS"]

DECISIONS = Counter(
    "allotment_decisions", "Authorization decisions by outcome and reason", ["outcome", "reason"]
)
LATENCY = Histogram(
    "allotment_request_duration_seconds",
    "Time to answer a request, by route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
STORE_ERRORS = Counter("allotment_store_errors", "Requests that failed because of the store")
