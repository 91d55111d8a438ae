"""The decision engine: which budgets apply to a call, and whether it fits.

Pure functions over values. The store reads the counters and applies the
result inside one transaction; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from allotment.core.budgets import Budget, Call, Mode
from allotment.core.decisions import BudgetView, Decision, Reason, Refusal, State, Warning
from allotment.core.ledger import Charge
from allotment.core.usage import Usage
from allotment.core.windows import Span

__all__ = ["Applied", "Counter", "decide", "resolve", "state_of", "view"]

_HUNDRED = Decimal(100)
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Applied:
    """A budget that counts a call, for one member, in the window of one instant."""

    budget: Budget
    member: str
    span: Span

    def charge(self, amount: int) -> Charge:
        """The counter charge of ``amount`` on this budget."""
        return Charge(self.budget.id, self.member, self.span.bucket, amount)


@dataclass(frozen=True, slots=True)
class Counter:
    """Consumption of one budget member in one window."""

    used: int = 0
    reserved: int = 0


def resolve(budgets: Iterable[Budget], call: Call, at: datetime) -> list[Applied]:
    """The budgets that count ``call`` at ``at``, after override resolution.

    A budget flagged ``overrides`` replaces the less specific budgets (see
    ``Budget.level``: individual > group > tenant > global) of the same meter,
    window and ``per`` for the calls it matches. Everything else that
    matches applies, so the most restrictive binds.
    """
    hits: list[Applied] = []
    for budget in budgets:
        member = budget.member(call)
        if member is None:
            continue
        span = budget.window.span(at)
        if span is not None:
            hits.append(Applied(budget, member, span))
    return _apply_overrides(hits)


def _apply_overrides(hits: list[Applied]) -> list[Applied]:
    top: dict[tuple[object, ...], int] = {}
    for hit in hits:
        budget = hit.budget
        if budget.overrides and budget.enabled:
            group = (budget.meter, budget.window, budget.per)
            top[group] = max(top.get(group, -1), budget.level)
    if not top:
        return hits
    return [
        hit
        for hit in hits
        if hit.budget.level >= top.get((hit.budget.meter, hit.budget.window, hit.budget.per), -1)
    ]


def decide(
    request_id: str,
    applied: Sequence[Applied],
    counters: Sequence[Counter],
    estimate: Usage,
    expires_at: datetime | None = None,
) -> tuple[Decision, tuple[Charge, ...]]:
    """Decide whether ``estimate`` fits every applicable budget.

    Returns the decision and, when allowed, the charges to reserve (one per
    applicable budget, enforced or not, so that commit and status treat every
    budget alike). When refused nothing is to be reserved.
    """
    refusals: list[Refusal] = []
    shadow: list[Refusal] = []
    amounts = [a.budget.meter.amount(estimate) for a in applied]
    for hit, counter, amount in zip(applied, counters, amounts, strict=True):
        refusal = _check(hit, counter, amount)
        if refusal is None:
            continue
        if hit.budget.mode is Mode.ENFORCE:
            refusals.append(refusal)
        elif hit.budget.mode is Mode.SHADOW:
            shadow.append(refusal)
    allowed = not refusals
    views: list[BudgetView] = []
    warnings: list[Warning] = []
    for hit, counter, amount in zip(applied, counters, amounts, strict=True):
        reserved = counter.reserved + amount if allowed else counter.reserved
        current = view(hit, Counter(counter.used, reserved))
        views.append(current)
        warnings.extend(_warnings(hit.budget, current, _check(hit, counter, amount)))
    charges = tuple(h.charge(a) for h, a in zip(applied, amounts, strict=True)) if allowed else ()
    decision = Decision(
        request_id=request_id,
        allowed=allowed,
        budgets=tuple(views),
        refusals=tuple(refusals),
        warnings=tuple(warnings),
        shadow_refusals=tuple(shadow),
        expires_at=expires_at if allowed else None,
    )
    return decision, charges


def _check(hit: Applied, counter: Counter, amount: int) -> Refusal | None:
    budget = hit.budget
    if budget.limit is None or not budget.enabled or budget.mode is Mode.OFF:
        return None
    consumed = counter.used + counter.reserved
    if consumed >= budget.limit:
        reason = Reason.HARD_CAP_EXCEEDED
    elif consumed + amount > budget.limit:
        reason = Reason.ESTIMATE_EXCEEDS_REMAINING
    else:
        return None
    remaining = max(0, budget.limit - consumed)
    return Refusal(budget.id, reason, amount, remaining, budget.limit, hit.span.resets_at)


def _warnings(budget: Budget, current: BudgetView, refusal: Refusal | None) -> list[Warning]:
    if not budget.enabled or budget.mode is Mode.OFF or current.percent is None:
        return []
    if budget.mode is Mode.WARN and refusal is not None:
        return [Warning(budget.id, refusal.reason.value, current.percent)]
    crossed = [t for t in budget.soft if current.percent >= t]
    if not crossed:
        return []
    return [Warning(budget.id, "soft_threshold", current.percent, crossed[-1])]


def view(hit: Applied, counter: Counter) -> BudgetView:
    """How ``hit``'s budget stands given ``counter``."""
    budget = hit.budget
    consumed = counter.used + counter.reserved
    limit = budget.limit
    percent = None if limit is None else _percent(consumed, limit)
    return BudgetView(
        budget_id=budget.id,
        name=budget.name,
        meter=budget.meter.value,
        member=hit.member,
        mode=budget.mode.value,
        enabled=budget.enabled,
        used=counter.used,
        reserved=counter.reserved,
        limit=limit,
        remaining=None if limit is None else max(0, limit - consumed),
        percent=percent,
        state=state_of(budget, consumed),
        window_start=hit.span.start,
        resets_at=hit.span.resets_at,
        currency=budget.currency,
    )


def state_of(budget: Budget, consumed: int) -> State:
    """The state of a budget that has ``consumed`` base units (used + reserved)."""
    if budget.limit is None:
        return State.WITHIN_BUDGET
    if consumed >= budget.limit:
        return State.EXCEEDED
    percent = _percent(consumed, budget.limit)
    if percent >= budget.at_limit:
        return State.AT_LIMIT
    if budget.soft and percent >= budget.soft[0]:
        return State.APPROACHING_LIMIT
    return State.WITHIN_BUDGET


def _percent(consumed: int, limit: int) -> Decimal:
    if limit == 0:
        return _HUNDRED
    # Round down so 94.999 % is not shown as the 95 % of ``at_limit``.
    return (Decimal(consumed) * _HUNDRED / limit).quantize(_CENT, rounding="ROUND_FLOOR")
