"""The decision engine: which budgets apply to a call, and whether it fits.

Pure functions over values. The store reads the counters and applies the
result inside one transaction; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import NamedTuple

from allotment.core.budgets import Budget, Call, Mode
from allotment.core.decisions import BudgetView, Decision, Reason, Refusal, Warning
from allotment.core.fx import NO_RATES, Rates
from allotment.core.ledger import Charge, charge_from_row
from allotment.core.usage import HELD_AMOUNTS, METER_AMOUNTS, Meter, Usage
from allotment.core.windows import Span, WindowKind

__all__ = [
    "NEWEST_BUCKET",
    "ROLLING_ANCHOR",
    "Applied",
    "Buckets",
    "Counter",
    "amounts",
    "bucket_total",
    "counted_range",
    "counter_from_row",
    "decide",
    "held",
    "locked_by",
    "occupied",
    "resolve",
    "view",
]

_HUNDRED = Decimal(100)
_tuple_new = tuple.__new__


class Applied(NamedTuple):
    """A budget that counts a call, for one member, in the window of one instant.

    ``rate`` converts the call's cost into the currency of a cost budget kept
    in another currency (None: no conversion).
    """

    budget: Budget
    member: str
    span: Span
    rate: Decimal | None = None

    def amount(self, usage: Usage) -> int:
        """How much of this budget's meter ``usage`` consumes, in its own units."""
        amount = METER_AMOUNTS[self.budget.meter](usage)
        if self.rate is None:
            return amount
        with localcontext() as ctx:
            ctx.prec = 60  # exact for any amount the usage checks admit
            exact = Decimal(amount) * self.rate
        return int(exact.to_integral_value(rounding=ROUND_CEILING))

    def charge(self, amount: int) -> Charge:
        """The counter charge of ``amount`` on this budget."""
        return Charge(self.budget.key, self.member, self.span.bucket, amount)


def _applied(budget: Budget, member: str, span: Span) -> Applied:
    """``Applied(budget, member, span)``: Applied's one shortcut past its constructor."""
    # tuple.__new__, not Applied(...): 8.2k of 394k instructions a pair (bench.instructions)
    return _tuple_new(Applied, (budget, member, span, None))


# The tuple above has one width on every call: checked once, here, not on each call.
assert Applied._fields == ("budget", "member", "span", "rate"), "Applied changed: see _applied"


#: the counter row (bucket) of a rolling window that admissions lock, in no window's range:
#: writers that charge different buckets of one window still take turns on it
ROLLING_ANCHOR = -1


#: above any bucket: a rolling window counts every bucket from its first on
NEWEST_BUCKET = 2**62


#: a rolling window's buckets that hold anything: bucket -> (used, reserved)
Buckets = dict[int, tuple[int, int]]


def bucket_total(buckets: Buckets) -> Counter:
    """A rolling window's count: the sum of its buckets."""
    values = buckets.values()
    return Counter(sum(u for u, _ in values), sum(r for _, r in values))


def occupied(buckets: Buckets) -> list[tuple[int, int]]:
    """Each bucket that holds anything, oldest first, with what it holds (used plus
    reserved): what a refusal's retry time is worked out from (``Limiting.buckets``)."""
    return sorted((k, u + r) for k, (u, r) in buckets.items() if u + r)


def counted_range(span: Span) -> tuple[int, int]:
    """The counter buckets a window counts at an instant (first, last, inclusive).

    A calendar or lifetime window counts its one bucket. A rolling window counts
    every bucket from its first on, newer ones too: a call that read the clock a
    moment earlier than another may reach the store after it, and the window it
    is admitted to must hold the usage the other already put in the next bucket.
    """
    if span.first_bucket == span.bucket:
        return span.bucket, span.bucket
    return span.first_bucket, NEWEST_BUCKET


def locked_by(applied: Iterable[Applied]) -> set[tuple[str, str, int]]:
    """The counter rows a step over ``applied`` locks: each budget's current bucket, and a
    rolling window's anchor (``ROLLING_ANCHOR``). Steps and their footprints both ask this."""
    keys = set()
    for a in applied:
        keys.add((a.budget.key, a.member, a.span.bucket))
        if a.span.first_bucket < a.span.bucket:
            keys.add((a.budget.key, a.member, ROLLING_ANCHOR))
    return keys


class Counter(NamedTuple):
    """Consumption of one budget member in one window."""

    used: int = 0
    reserved: int = 0


_COUNTER_WIDTH = len(Counter._fields)


def counter_from_row(values: Sequence[int]) -> Counter:
    """A ``Counter`` from a stored row in field order, unchecked: Counter's one
    positional codec (values one field short fail the assert, not a read)."""
    assert len(values) == _COUNTER_WIDTH, f"{len(values)} values for Counter's {_COUNTER_WIDTH}"
    # tuple.__new__, not Counter(*values): 4.2k of 394k instructions a pair (bench.instructions)
    return _tuple_new(Counter, values)


def resolve(
    budgets: Iterable[Budget],
    call: Call,
    at: datetime,
    currency: str | None = None,
    rates: Rates = NO_RATES,
) -> list[Applied]:
    """The budgets that count ``call`` at ``at``, after override resolution.

    A budget flagged ``overrides`` replaces the less specific budgets (see
    ``Budget.level``: individual > group > tenant > global) of the same meter,
    window and ``per`` for the calls it matches. Everything else that
    matches applies, so the most restrictive binds.

    ``currency`` is the currency the call's cost is in; a cost budget kept in
    another currency converts it with ``rates`` as of ``at``.

    The result keeps the order of ``budgets``, and ``decide`` names refusals in
    it: stores hand budgets over ``in_order`` (``allotment.core.budgets``).
    """
    hits: list[Applied] = []
    overriding = False
    for budget in budgets:
        member = budget.member(call)
        if member is None:
            continue
        span = budget.window.span(at)
        if span is None:
            continue
        if budget.overrides:
            overriding = True
        target = budget.currency
        if target is None or currency is None or target == currency:
            hits.append(_applied(budget, member, span))
        else:
            hits.append(Applied(budget, member, span, rates.rate(currency, target, at)))
    return _apply_overrides(hits) if overriding else hits


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
    credit: Sequence[int] | None = None,
) -> tuple[Decision, tuple[Charge, ...]]:
    """Decide whether ``estimate`` fits every applicable budget.

    Returns the decision and, when allowed, the charges to reserve (one per
    applicable budget, enforced or not, so that commit and status treat every
    budget alike). When refused nothing is to be reserved.

    ``credit`` (per applied budget) is what a credit pool's grants add to its
    room: such a budget is charged only what its own allowance has left, and
    the caller draws the rest on the grants.
    """
    if credit is not None:
        return _decide(request_id, applied, counters, held(applied, estimate), expires_at, credit)
    views: list[BudgetView] = []
    charges: list[Charge] = []
    for hit, (used, reserved) in zip(applied, counters, strict=True):
        budget = hit.budget
        n = HELD_AMOUNTS[budget.meter](estimate) if hit.rate is None else hit.amount(estimate)
        quiet_below = budget.quiet_below
        if quiet_below is not None and used + reserved + n >= quiet_below:
            return _decide(request_id, applied, counters, held(applied, estimate), expires_at)
        views.append(BudgetView(budget, hit.member, hit.span, used, reserved + n))
        charges.append(charge_from_row((budget.key, hit.member, hit.span.bucket, n)))
    # Every budget stays below its limit and first threshold: allowed, nothing to warn of.
    return Decision(request_id, True, tuple(views), expires_at=expires_at), tuple(charges)


def amounts(applied: Sequence[Applied], usage: Usage) -> list[int]:
    """How much of each applied budget's meter ``usage`` consumes, in its own units."""
    return [METER_AMOUNTS[h.budget.meter](usage) if h.rate is None else h.amount(usage)
            for h in applied]  # fmt: skip


def held(applied: Sequence[Applied], estimate: Usage) -> list[int]:
    """How much of each applied budget a reservation of ``estimate`` holds: what it
    would use, and one slot of each concurrency budget."""
    return [HELD_AMOUNTS[h.budget.meter](estimate) if h.rate is None else h.amount(estimate)
            for h in applied]  # fmt: skip


def _decide(
    request_id: str,
    applied: Sequence[Applied],
    counters: Sequence[Counter],
    amounts: list[int],
    expires_at: datetime | None,
    credit: Sequence[int] | None = None,
) -> tuple[Decision, tuple[Charge, ...]]:
    """``decide`` when some budget nears or passes a threshold (or draws on credit):
    check each one."""
    refusals: list[Refusal] = []
    shadow: list[Refusal] = []
    checks: list[Refusal | None] = []
    for i, (hit, counter, amount) in enumerate(zip(applied, counters, amounts, strict=True)):
        if credit is not None and hit.budget.credits:
            # A pool's allowance takes what it has room for; its grants the rest.
            refusal = _check_pool(hit, counter, amount, credit[i])
            amounts[i] = min(amount, max(0, (hit.budget.limit or 0) - sum(counter)))
        else:
            refusal = _check(hit, counter, amount) if hit.budget.limit is not None else None
        checks.append(refusal)
        if refusal is not None:
            mode = hit.budget.mode
            if mode is Mode.ENFORCE:
                refusals.append(refusal)
            elif mode is Mode.SHADOW:
                shadow.append(refusal)
    allowed = not refusals
    views: list[BudgetView] = []
    warnings: list[Warning] = []
    for hit, counter, amount, refusal in zip(applied, counters, amounts, checks, strict=True):
        reserved = counter.reserved + amount if allowed else counter.reserved
        current = BudgetView(hit.budget, hit.member, hit.span, counter.used, reserved)
        views.append(current)
        if hit.budget.limit is not None:
            warning = _warning(current, refusal)
            if warning is not None:
                warnings.append(warning)
    if any(v.budget.policy is not None for v in views):
        warnings = _policy_warnings(views, warnings)
    decision = Decision(
        request_id, allowed, tuple(views), tuple(refusals), tuple(warnings), tuple(shadow),
        expires_at if allowed else None,
    )  # fmt: skip
    if not allowed:
        return decision, ()
    return decision, _charges(applied, amounts)


def _charges(applied: Sequence[Applied], amounts: Sequence[int]) -> tuple[Charge, ...]:
    return tuple(
        Charge(h.budget.key, h.member, h.span.bucket, n)
        for h, n in zip(applied, amounts, strict=True)
    )


def _check(hit: Applied, counter: Counter, amount: int) -> Refusal | None:
    budget = hit.budget
    limit = budget.limit
    if limit is None or not budget.enabled or budget.mode is Mode.OFF:
        return None
    consumed = counter.used + counter.reserved
    if consumed < limit and consumed + amount <= limit:
        return None
    if budget.meter is Meter.CONCURRENCY or budget.window.kind is WindowKind.ROLLING:
        # A limit that frees up by itself: retry later, unless the call can never fit.
        if amount > limit:
            reason = Reason.ESTIMATE_EXCEEDS_LIMIT
        elif budget.meter is Meter.CONCURRENCY:
            reason = Reason.CONCURRENCY_LIMITED
        else:
            reason = Reason.RATE_LIMITED
    elif consumed >= limit:
        reason = Reason.HARD_CAP_EXCEEDED
    else:
        reason = Reason.ESTIMATE_EXCEEDS_REMAINING
    return Refusal(budget.id, reason, amount, max(0, limit - consumed), limit, hit.span.resets_at)


def _check_pool(hit: Applied, counter: Counter, amount: int, credit: int) -> Refusal | None:
    """A credit pool's check: its allowance's room and ``credit`` (its grants) together."""
    budget = hit.budget
    room = max(0, (budget.limit or 0) - counter.used - counter.reserved) + credit
    if amount <= room:
        return None
    limit = budget.limit or 0
    return Refusal(budget.id, Reason.CREDITS_EXHAUSTED, amount, room, limit, hit.span.resets_at)


def _warning(view: BudgetView, refusal: Refusal | None) -> Warning | None:
    budget = view.budget
    if not budget.enabled or budget.mode is Mode.OFF:
        return None
    consumed = view.used + view.reserved
    if budget.mode is Mode.WARN and refusal is not None:
        return Warning(budget.id, refusal.reason.value, budget.percent(consumed) or _HUNDRED)
    threshold = budget.crossed(consumed)
    if threshold is None:
        return None
    return Warning(budget.id, "soft_threshold", budget.percent(consumed) or _HUNDRED, threshold)


def _policy_warnings(views: Sequence[BudgetView], warnings: list[Warning]) -> list[Warning]:
    """Soft-threshold warnings with policies warning as one (system 2).

    The budgets of one policy (same name, meter and window) that apply to the
    call warn at the lowest first soft threshold among them, measured against
    the one with the least room left (the binding limit), instead of each at
    its own threshold.
    """
    policies: dict[tuple[object, ...], list[BudgetView]] = {}
    for v in views:
        b = v.budget
        if b.policy is not None and b.limit is not None and b.enabled and b.mode is not Mode.OFF:
            policies.setdefault((b.policy, b.meter, b.window), []).append(v)
    members = {v.budget.id for group in policies.values() for v in group}
    kept = [w for w in warnings if w.code != "soft_threshold" or w.budget_id not in members]
    for group in policies.values():
        warning = _policy_warning(group)
        if warning is not None:
            kept.append(warning)
    return kept


def _policy_warning(group: Sequence[BudgetView]) -> Warning | None:
    thresholds = [v.budget.soft[0] for v in group if v.budget.soft]
    if not thresholds:
        return None
    binding = min(group, key=lambda v: (v.budget.limit or 0) - v.used - v.reserved)
    limit, consumed = binding.budget.limit or 0, binding.used + binding.reserved
    threshold = min(thresholds)
    if consumed * 10_000 < int(threshold * 100) * limit:
        return None
    return Warning(binding.budget.id, "soft_threshold", binding.percent or _HUNDRED, threshold)


def view(hit: Applied, counter: Counter) -> BudgetView:
    """How ``hit``'s budget stands given ``counter``."""
    return BudgetView(hit.budget, hit.member, hit.span, counter.used, counter.reserved)
