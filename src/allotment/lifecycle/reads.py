"""Reads: where the applicable budgets stand, and usage totals from the hourly rollups."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from allotment.core import engine
from allotment.core.budgets import Call
from allotment.core.decisions import BudgetView
from allotment.core.ledger import EventStatus
from allotment.errors import ValidationError
from allotment.lifecycle import credits, plans, topups
from allotment.lifecycle.queries import UsageQuery, UsageRow
from allotment.lifecycle.tx import ROLLUP_DIMENSIONS, ROLLUP_TOTALS, Ledger, RollupKey, StatusTx

__all__ = ["BREAKDOWN_BY", "USAGE_ORDER", "check_usage_query", "status", "usage"]

#: what usage breakdowns can group by
BREAKDOWN_BY = (*ROLLUP_DIMENSIONS, "hour", "day")


def status(
    tx: StatusTx, call: Call, now: datetime, plan_from_subject: bool = False
) -> list[BudgetView]:
    """Every budget that applies to ``call`` at ``now``, as it stands (the member's
    plan's budgets among them)."""
    call = plans.planned(tx, call, plan_from_subject)
    applied = engine.resolve(tx.budgets_for(call.subject.tenant), call, now)
    views = [engine.view(a, c) for a, c in zip(applied, tx.read(applied), strict=True)]
    pools = []
    for hit, view in zip(applied, views, strict=True):
        if hit.budget.credits:
            pool = credits.open_pool(
                tx, hit.budget.key, hit.member, now, write=False, budget=hit.budget
            )
            view.credit = pool.view()
            pools.append((hit.budget, pool))
    topups.report(tx, pools, [v for v in views if v.credit is not None])
    return views


def usage(tx: Ledger, query: UsageQuery) -> list[UsageRow]:
    """Totals grouped by ``query.by``, read from hourly rollups (never the ledger)."""
    check_usage_query(query)
    since = None if query.since is None else int(query.since.timestamp()) // 3600 * 3600
    until = None if query.until is None else int(query.until.timestamp())
    groups: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * (3 + len(ROLLUP_TOTALS)))
    for key, values in tx.rollups(query.tenant, since, until):
        if key[8] == EventStatus.SHADOW:
            continue  # what shadow budgets would have refused: not a call of its own
        group = tuple(_group_value(key, d) for d in query.by)
        row = groups[group]
        counted = key[8] in ("success", "error")
        row[0] += values[0] if counted else 0
        row[1] += values[0] if key[8] == "error" else 0
        row[2] += values[0] if key[8] == "blocked" else 0
        if counted:
            for i, value in enumerate(values[1:]):
                row[3 + i] += value
    rows = [
        UsageRow(
            dict(zip(query.by, group, strict=True)),
            calls=row[0],
            errors=row[1],
            blocked=row[2],
            totals=dict(zip(ROLLUP_TOTALS, row[3:], strict=True)),
        )
        for group, row in sorted(groups.items())
    ]
    if query.order is not None:
        rows.sort(key=USAGE_ORDER[query.order], reverse=True)  # stable: ties in group order
    return rows if query.limit is None else rows[: query.limit]


def check_usage_query(query: UsageQuery) -> None:
    for dimension in query.by:
        if dimension not in BREAKDOWN_BY:
            raise ValidationError(
                "by", f"cannot group by {dimension!r} (one of {', '.join(BREAKDOWN_BY)})"
            )
    if query.order is not None and query.order not in USAGE_ORDER:
        choices = ", ".join(USAGE_ORDER)
        raise ValidationError("order", f"cannot order by {query.order!r} (one of {choices})")
    limit = query.limit
    if limit is not None and (type(limit) is not int or not 1 <= limit <= 10_000):
        raise ValidationError("limit", "must be an integer from 1 to 10000")


def _total(name: str) -> Callable[[UsageRow], int]:
    return lambda row: row.totals[name]


#: what usage rows can be ordered by (biggest first)
USAGE_ORDER: dict[str, Callable[[UsageRow], int]] = {
    "calls": lambda r: r.calls,
    "errors": lambda r: r.errors,
    "blocked": lambda r: r.blocked,
    "cost": lambda r: r.totals["cost_micros"],
    "tokens": lambda r: r.totals["input_tokens"] + r.totals["output_tokens"],
    **{name: _total(name) for name in ROLLUP_TOTALS},
}


def _group_value(key: RollupKey, dimension: str) -> str:
    if dimension in ("hour", "day"):
        instant = datetime.fromtimestamp(key[1], UTC)
        return instant.strftime("%Y-%m-%dT%H:00Z" if dimension == "hour" else "%Y-%m-%d")
    return str(key[2 + ROLLUP_DIMENSIONS.index(dimension)])
