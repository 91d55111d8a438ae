"""The service's Prometheus instruments (exposed by ``allotment.api.metrics``).

``latency`` and ``decisions`` hand out each labelled child once per process:
``labels()`` checks and joins its label values on every call, which costs
more than the observation itself on the hot routes.
"""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Histogram

__all__ = [
    "DECISIONS",
    "LATENCY",
    "LATE_COMMITS",
    "LATE_OVERSHOOT",
    "SHADOW_REFUSALS",
    "STORE_ERRORS",
    "decisions",
    "latency",
    "shadow_refusals",
]

DECISIONS = Counter(
    "allotment_decisions", "Authorization decisions by outcome and reason", ["outcome", "reason"]
)
LATENCY = Histogram(
    "allotment_request_duration_seconds",
    "Time to answer a request, by route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
SHADOW_REFUSALS = Counter(
    "allotment_shadow_refusals",
    "Calls a shadow budget would have refused (and let through), by budget and reason",
    ["budget", "reason"],
)
STORE_ERRORS = Counter("allotment_store_errors", "Requests that failed because of the store")
LATE_COMMITS = Counter(
    "allotment_late_commits", "Commits that arrived after their reservation expired or was released"
)
LATE_OVERSHOOT = Counter(
    "allotment_late_overshoot",
    "Base units (tokens, micro-units, ms) late commits took enforced budgets past their limits",
    ["meter"],
)


@cache
def latency(method: str, route: str) -> Histogram:
    """The latency histogram of one method and route."""
    return LATENCY.labels(method, route)


@cache
def decisions(outcome: str, reason: str) -> Counter:
    """The decision counter of one outcome and reason."""
    return DECISIONS.labels(outcome, reason)


@cache
def shadow_refusals(budget: str, reason: str) -> Counter:
    """The shadow refusal counter of one budget and reason."""
    return SHADOW_REFUSALS.labels(budget, reason)
