"""Ledger maintenance: rebuild counters and rollups, archive old events, re-price."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from fnmatch import fnmatchcase

from allotment.core.budgets import Call
from allotment.core.ledger import Event
from allotment.core.usage import Meter
from allotment.lifecycle._shared import PriceFn, counted_by, rollup_of
from allotment.lifecycle.budgets import CreditMovements, contributions, rebuild_counters
from allotment.lifecycle.queries import EventQuery
from allotment.lifecycle.tx import ROLLUP_TOTALS, MaintenanceTx

__all__ = [
    "ARCHIVED_BEFORE",
    "ArchiveStats",
    "RebuildStats",
    "RepriceRequest",
    "RepriceStats",
    "archive_page",
    "finish_archive",
    "rebuild",
    "reprice_page",
]

#: meta key: the ledger holds no events before this hour (epoch seconds) but late ones
ARCHIVED_BEFORE = "archived_before"


@dataclass(slots=True)
class RepriceRequest:
    """Re-price the committed calls of a time range (optionally one tenant, models)."""

    since: datetime
    until: datetime
    price: PriceFn
    model: str | None = None
    tenant: str | None = None


@dataclass(slots=True)
class RepriceStats:
    """What a reprice looked at and changed; ``delta_micros`` is new minus old."""

    events: int = 0
    changed: int = 0
    delta_micros: int = 0


@dataclass(frozen=True, slots=True)
class RebuildStats:
    """What a counter rebuild read and wrote."""

    events: int
    counters: int


@dataclass(slots=True)
class ArchiveStats:
    """What ``archive`` moved: events out of the ledger, request ids forgotten."""

    events: int = 0
    request_ids: int = 0


def archive_page(tx: MaintenanceTx, page: Sequence[Event]) -> None:
    """Move ``page`` (already written to the archive) out of the ledger.

    What the events added to counters goes into the counter baseline, so a
    rebuild still counts them; their hourly rollups stay where they are.
    """
    pools = {b.key for b in tx.all_budgets(None) if b.credits}
    totals = contributions(tx, page, None, CreditMovements.of(tx, pools).covered)
    tx.add_baseline([(b, m, k, used) for (b, m, k), used in totals.items() if used])
    tx.delete_events([e.id for e in page if e.id is not None])


def finish_archive(tx: MaintenanceTx, cutoff: datetime) -> int:
    """Forget finished request ids before ``cutoff``; record the cutoff. Returns how many."""
    removed = tx.delete_finished_reservations(cutoff)
    hour = int(cutoff.timestamp())
    previous = tx.meta(ARCHIVED_BEFORE)
    if previous is None or int(previous) < hour:
        tx.set_meta(ARCHIVED_BEFORE, str(hour))
    return removed


def reprice_page(
    tx: MaintenanceTx, request: RepriceRequest, after_id: int, now: datetime, stats: RepriceStats
) -> int | None:
    """Re-price one page of events after ``after_id``; the next cursor, or None at the end.

    An event keeps its previous price under ``price["previous"]``; counters
    and rollups move by the difference. Costs the caller supplied stay.
    """
    query = EventQuery(
        tenant=request.tenant,
        since=request.since,
        until=request.until,
        after_id=after_id,
        limit=500,
    )
    page = list(tx.events(query))
    for event in page:
        if not event.status.counts or event.price.get("source") == "caller":
            continue
        if request.model is not None and not fnmatchcase(event.model, request.model):
            continue
        stats.events += 1
        _reprice(tx, event, request, now, stats)
    return page[-1].id if len(page) == 500 and page[-1].id else None


def _reprice(
    tx: MaintenanceTx, event: Event, request: RepriceRequest, now: datetime, stats: RepriceStats
) -> None:
    call = Call(event.subject, event.provider, event.model)
    unpriced = event.usage._replace(cost_micros=None)
    usage, price = request.price(call, unpriced, event.occurred_at)
    old, new = event.usage.cost_micros or 0, usage.cost_micros or 0
    if new == old and price.get("source") == event.price.get("source"):
        return
    history = [*event.price.get("previous", []), _without_history(event.price) | {
        "amount_micros": old, "replaced_at": now.isoformat()}]  # fmt: skip
    updated = replace(event, usage=usage, price=price | {"previous": history})
    tx.update_event(updated)
    applied = counted_by(tx, call, event.occurred_at, event.currency)
    tx.add([(a.budget.key, a.member, a.span.bucket, a.amount(usage) - a.amount(event.usage), 0)
            for a in applied if a.budget.meter is Meter.COST])  # fmt: skip
    key, _ = rollup_of(event)
    # no calls, no tokens: only the cost (last, as core.usage checks at import) moves
    tx.bump_rollup(key, (0, *(0 for _ in ROLLUP_TOTALS[:-1]), new - old))
    stats.changed += 1
    stats.delta_micros += new - old


def _without_history(price: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in price.items() if k != "previous"}


def rebuild(tx: MaintenanceTx) -> RebuildStats:
    """Recompute every counter and rollup from the ledger."""
    plans = tx.all_plans(None)
    budgets = [*tx.all_budgets(None), *(b for p in plans for b in p.budgets)]
    tx.clear_counters(None)
    events = rebuild_counters(tx, budgets)
    # Rollups of archived hours stay: their events are no longer here to recount.
    archived = tx.meta(ARCHIVED_BEFORE)
    kept = None if archived is None else int(archived)
    tx.clear_rollups(kept)
    after = 0
    while True:
        page = list(tx.events(EventQuery(after_id=after, limit=10_000)))
        for event in page:
            if kept is None or event.occurred_at.timestamp() >= kept:
                tx.bump_rollup(*rollup_of(event))
        if len(page) < 10_000:
            break
        after = page[-1].id or 0
    return RebuildStats(events=events, counters=len(tx.all_counters()))
