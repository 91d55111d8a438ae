"""When a call refused by a rate or concurrency limit can try again (``Retry-After``).

A rate limit is a budget over a rolling window: it frees up as usage leaves
the window, bucket by bucket, so the retry time is when enough of the oldest
buckets have left for the call to fit (``Window.frees_at``), not a guess. A
concurrency limit frees up when the soonest lease holding one of its slots
ends (``allotment.lifecycle.leases``). Asked only of refused calls: a granted
one pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from allotment.core.decisions import Decision, Reason, Refusal
from allotment.core.engine import Applied, Counter
from allotment.lifecycle import leases
from allotment.lifecycle.tx import CallTx

__all__ = ["timed"]


def timed(
    tx: CallTx,
    decision: Decision,
    applied: Sequence[Applied],
    counters: Sequence[Counter],
    now: datetime,
) -> Decision:
    """``decision`` with, on each refusal by a rate or concurrency limit, when to retry."""
    if not any(r.reason.retryable for r in decision.refusals):
        return decision
    refusals = tuple(
        _rate(tx, r, applied, counters, now) if r.reason is Reason.RATE_LIMITED
        else leases.retry_at(tx, r, applied, now) if r.reason is Reason.CONCURRENCY_LIMITED
        else r
        for r in decision.refusals
    )  # fmt: skip
    return replace(decision, refusals=refusals)


def _rate(
    tx: CallTx,
    refusal: Refusal,
    applied: Sequence[Applied],
    counters: Sequence[Counter],
    now: datetime,
) -> Refusal:
    """``refusal`` with the moment enough of its window's usage has left it."""
    for hit, (used, reserved) in zip(applied, counters, strict=True):
        if hit.budget.id == refusal.budget_id:
            need = used + reserved + refusal.requested - refusal.limit
            at = hit.budget.window.frees_at(tx.buckets(hit), need)
            return refusal if at is None else replace(refusal, retry_at=max(at, now))
    return refusal
