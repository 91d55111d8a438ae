"""Compound store operations, written once over each backend's primitives.

Every function here runs inside one backend transaction (``Tx``) that holds
the backend's write lock for its duration, so reading counters, deciding with
the pure engine and writing the reservation is one atomic step: no other
writer can interleave between the read and the write.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Protocol

from allotment.core import engine
from allotment.core.budgets import Budget, Call
from allotment.core.decisions import BudgetView, Decision, Reason, Refusal, Uncovered, Warning
from allotment.core.engine import Applied, Counter
from allotment.core.fx import FxRate, Rates
from allotment.core.keys import ApiKey
from allotment.core.ledger import (
    NOTHING_USED,
    Adjustment,
    Charge,
    CommitResult,
    Event,
    EventStatus,
    Overshoot,
    Reservation,
    ReservationState,
    same_payload,
)
from allotment.core.subjects import check_identifier
from allotment.core.usage import USAGE_FIELDS, Meter
from allotment.errors import ConflictError, NotFoundError, ValidationError
from allotment.store.base import (
    AuthorizeRequest,
    CommitRequest,
    EventQuery,
    RebuildStats,
    RecordRequest,
    RepriceRequest,
    RepriceStats,
    UsageQuery,
    UsageRow,
)

#: (budget key, member, bucket, change of used, change of reserved)
Delta = tuple[str, str, int, int, int]
#: tenant, hour (epoch s), user, key, agent, feature, provider, model, status
RollupKey = tuple[str, int, str, str, str, str, str, str, str]
ROLLUP_DIMENSIONS = ("user", "key", "agent", "feature", "provider", "model", "status")
#: usage totals a rollup keeps, after the call count: every usage field, cost_micros last
ROLLUP_TOTALS = USAGE_FIELDS
#: what usage breakdowns can group by
BREAKDOWN_BY = (*ROLLUP_DIMENSIONS, "hour", "day")


class Tx(Protocol):
    """The primitives a backend offers inside one transaction."""

    def budgets_for(self, tenant: str) -> Sequence[Budget]: ...
    def insert_key(self, key: ApiKey, secret_hash: str) -> None: ...
    def key(self, key_id: str) -> tuple[ApiKey, str] | None: ...
    def keys(self, tenant: str | None) -> list[ApiKey]: ...
    def update_key(self, key: ApiKey) -> None: ...
    def rates(self) -> Rates: ...
    def put_rate(self, rate: FxRate) -> None: ...
    def all_budgets(self, tenant: str | None) -> Sequence[Budget]: ...
    def budget(self, key: str) -> Budget | None: ...
    def budgets_named(self, budget_id: str) -> list[Budget]: ...
    def put_budget(self, budget: Budget) -> None: ...
    def insert_budget(self, budget: Budget) -> bool: ...
    def delete_budget(self, key: str) -> None: ...
    def lock_config(self) -> None: ...
    def read(self, applied: Sequence[Applied]) -> list[Counter]: ...
    def add(self, deltas: Sequence[Delta]) -> None: ...
    def clear_counters(self, keys: Sequence[str] | None) -> None: ...
    def all_counters(self) -> dict[tuple[str, str, int], tuple[int, int]]: ...
    def reservations(self, request_id: str) -> list[Reservation]: ...
    def insert_reservation(self, reservation: Reservation) -> None: ...
    def update_reservation(self, reservation: Reservation) -> None: ...
    def expired(self, now: datetime, limit: int) -> list[Reservation]: ...
    def held(self) -> Iterable[Reservation]: ...
    def append(self, event: Event) -> Event: ...
    def event(self, event_id: int) -> Event: ...
    def update_event(self, event: Event) -> None: ...
    def events(self, query: EventQuery) -> Iterable[Event]: ...
    def counting_events(self, tenant: str | None) -> Iterable[Event]: ...
    def bump_rollup(self, key: RollupKey, values: Sequence[int]) -> None: ...
    def clear_rollups(self, from_hour: int | None) -> None: ...
    def baseline(self, keys: Sequence[str] | None) -> dict[tuple[str, str, int], int]: ...
    def add_baseline(self, rows: Sequence[tuple[str, str, int, int]]) -> None: ...
    def delete_events(self, event_ids: Sequence[int]) -> None: ...
    def delete_finished_reservations(self, before: datetime) -> int: ...
    def meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def meta_default(self, key: str, value: str) -> str: ...
    def rollups(
        self, tenant: str, since: int | None, until: int | None
    ) -> Iterable[tuple[RollupKey, Sequence[int]]]: ...


def authorize(tx: Tx, request: AuthorizeRequest, now: datetime) -> Decision:
    """Reserve on every applicable budget, or refuse and reserve nothing."""
    call = request.call
    existing = pick(tx.reservations(request.request_id), request.request_id, call.subject.tenant)
    if existing is not None:
        if not same_payload(existing.payload_hash, request.payload_hash, request.payload):
            raise ConflictError(request.request_id, "reused with a different authorize payload")
        return _replay(tx, existing)
    applied = engine.resolve(
        tx.budgets_for(call.subject.tenant), call, now, request.currency, tx.rates()
    )
    counters = tx.read(applied)
    refusal = request.refusal
    if refusal is None and not applied and request.uncovered is Uncovered.DENY:
        refusal = Refusal(None, Reason.NO_BUDGET, 0, 0, 0, None)
    if refusal is not None:
        views = tuple(engine.view(a, c) for a, c in zip(applied, counters, strict=True))
        decision = Decision(request.request_id, False, views, (refusal,))
        _blocked(tx, request, refusal, now)
        return decision
    expires_at = now + timedelta(seconds=request.ttl_seconds)
    decision, charges = engine.decide(
        request.request_id, applied, counters, request.estimate, expires_at
    )
    if request.warnings or (not applied and request.uncovered is Uncovered.WARN):
        decision = _flagged(decision, request, bool(applied))
    if decision.allowed:
        tx.add([(c.budget_key, c.member, c.bucket, 0, c.amount) for c in charges])
        tx.insert_reservation(
            Reservation(
                request.request_id,
                call.subject,
                call.provider or "",
                call.model or "",
                request.estimate,
                charges,
                now,
                expires_at,
                request.payload_hash,
            )
        )
    else:
        _blocked(tx, request, decision.refusals[0], now)
    return decision


def _flagged(decision: Decision, request: AuthorizeRequest, covered: bool) -> Decision:
    """``decision`` with the warnings no budget raised: an unknown model, no budget."""
    flags = request.warnings if covered else (*request.warnings, NO_BUDGET)
    return replace(decision, warnings=(*decision.warnings, *flags))


NO_BUDGET = Warning(None, Reason.NO_BUDGET.value, None)


def _blocked(tx: Tx, request: AuthorizeRequest, refusal: Refusal, now: datetime) -> None:
    call = request.call
    _append(
        tx,
        Event(
            request.request_id,
            EventStatus.BLOCKED,
            call.subject,
            call.provider or "",
            call.model or "",
            NOTHING_USED,
            now,
            now,
            currency=str(request.price.get("currency", "")),
            reason=refusal.reason.value,
            budget_id=refusal.budget_id,
            price=request.price,
            estimate=request.estimate,
        ),
    )


def _replay(tx: Tx, reservation: Reservation) -> Decision:
    call = Call(reservation.subject, reservation.provider, reservation.model)
    applied = engine.resolve(tx.budgets_for(call.subject.tenant), call, reservation.authorized_at)
    views = tuple(engine.view(a, c) for a, c in zip(applied, tx.read(applied), strict=True))
    return Decision(
        reservation.request_id,
        allowed=True,
        budgets=views,
        expires_at=reservation.expires_at,
        replayed=True,
    )


def commit(tx: Tx, request: CommitRequest, now: datetime) -> CommitResult:
    """Swap a reservation for the actual usage, in the authorization's windows."""
    reservation = pick(tx.reservations(request.request_id), request.request_id, request.tenant)
    if reservation is None:
        return _post_hoc_commit(tx, request, now)
    if reservation.state is ReservationState.COMMITTED:
        if reservation.event_id is None or not same_payload(
            reservation.commit_hash, request.payload_hash, request.payload
        ):
            raise ConflictError(request.request_id, "already committed with different usage")
        return CommitResult(tx.event(reservation.event_id), replayed=True)
    late = reservation.state is ReservationState.RELEASED
    call = Call(
        reservation.subject,
        request.provider or reservation.provider,
        request.model or reservation.model,
    )
    at = reservation.authorized_at
    usage, price = request.price(call, request.usage, at)
    applied = engine.resolve(
        tx.budgets_for(call.subject.tenant), call, at, request.currency, tx.rates()
    )
    amounts = engine.amounts(applied, usage)
    deltas, adjustments = _settle(applied, amounts, reservation.charges, late)
    overshoot = _late_overshoot(applied, tx.read(applied), amounts) if late else ()
    tx.add(deltas)
    event = _append(
        tx,
        Event(
            request.request_id,
            request.status,
            call.subject,
            call.provider or "",
            call.model or "",
            usage,
            at,
            now,
            request.currency,
            reason=request.reason,
            price=price,
            payload_hash=request.payload_hash,
        ),
    )
    tx.update_reservation(
        reservation.moved(ReservationState.COMMITTED, request.payload_hash, event.id)
    )
    return CommitResult(event, adjustments, late=late, late_overshoot=overshoot)


def _late_overshoot(
    applied: Sequence[Applied], counters: Sequence[Counter], amounts: Sequence[int]
) -> tuple[Overshoot, ...]:
    """The part of a late commit's ``amounts`` beyond each enforced hard limit.

    Its reservation's room was given back, so others may hold or have used it:
    whatever of the amount no longer fits under the limit is overshoot.
    """
    out = []
    for a, (used, reserved), amount in zip(applied, counters, amounts, strict=True):
        limit = a.budget.limit
        if limit is None or not a.budget.enforced or not amount:
            continue
        over = min(amount, used + reserved + amount - limit)
        if over > 0:
            budget = a.budget
            out.append(Overshoot(budget.id, a.member, budget.meter.value, over, budget.currency))
    return tuple(out)


def _settle(
    applied: Sequence[Applied], amounts: Sequence[int], charges: Sequence[Charge], late: bool
) -> tuple[list[Delta], tuple[Adjustment, ...]]:
    """A commit's counter deltas (``amounts`` used, ``charges`` released unless
    ``late``) and how the amounts compare with the charges."""
    keys = [(a.budget.key, a.member, a.span.bucket) for a in applied]
    if [c[:3] for c in charges] == keys:
        # The authorization's budgets in its order, the usual case: one delta each.
        held = [0] * len(keys) if late else [-c.amount for c in charges]
        deltas = [(b, m, k, n, r) for (b, m, k), n, r in zip(keys, amounts, held, strict=True)]
        adjustments = tuple(
            Adjustment(a.budget.id, c.member, c.amount, n, a.budget.meter.value, a.budget.currency)
            for a, c, n in zip(applied, charges, amounts, strict=True)
        )
        return deltas, adjustments
    # Budgets changed since (created, deleted, a new window): merge what overlaps.
    released = [] if late else [(c.budget_key, c.member, c.bucket, 0, -c.amount) for c in charges]
    deltas = merge_deltas(released + _usage_deltas(applied, amounts))
    return deltas, _adjustments(applied, amounts, charges)


def merge_deltas(deltas: Sequence[Delta]) -> list[Delta]:
    """One delta per counter: a commit usually releases and charges the same ones."""
    merged: dict[tuple[str, str, int], list[int]] = {}
    for budget_key, member, bucket, used, reserved in deltas:
        row = merged.setdefault((budget_key, member, bucket), [0, 0])
        row[0] += used
        row[1] += reserved
    return [(b, m, k, u, r) for (b, m, k), (u, r) in merged.items()]


def _usage_deltas(applied: Sequence[Applied], amounts: Sequence[int]) -> list[Delta]:
    """What ``amounts`` (one per applied budget, in order) add to each counter's use."""
    return [(a.budget.key, a.member, a.span.bucket, n, 0)
            for a, n in zip(applied, amounts, strict=True)]  # fmt: skip


def _adjustments(
    applied: Sequence[Applied], amounts: Sequence[int], charges: Sequence[Charge]
) -> tuple[Adjustment, ...]:
    estimated = {(c.budget_key, c.member): c.amount for c in charges}
    return tuple(
        Adjustment(
            a.budget.id, a.member, estimated.get((a.budget.key, a.member), 0), n,
            a.budget.meter.value, a.budget.currency,
        )
        for a, n in zip(applied, amounts, strict=True)
    )  # fmt: skip


def _post_hoc_commit(tx: Tx, request: CommitRequest, now: datetime) -> CommitResult:
    if request.subject is None or request.provider is None or request.model is None:
        raise NotFoundError(
            f"request {request.request_id!r} was never authorized; to meter it post hoc "
            "give subject, provider and model"
        )
    return record(
        tx,
        RecordRequest(
            request.request_id,
            Call(request.subject, request.provider, request.model),
            request.usage,
            request.status,
            now,
            request.payload_hash,
            request.currency,
            request.price,
            request.reason,
            request.payload,
        ),
        now,
    )


def record(tx: Tx, request: RecordRequest, now: datetime) -> CommitResult:
    """Meter a call that was never authorized; idempotent per request id."""
    tenant = request.call.subject.tenant
    existing = pick(tx.reservations(request.request_id), request.request_id, tenant)
    if existing is not None:
        if existing.state is ReservationState.HELD:
            raise ConflictError(request.request_id, "is an authorization; commit it instead")
        if existing.event_id is None or not same_payload(
            existing.commit_hash, request.payload_hash, request.payload
        ):
            raise ConflictError(request.request_id, "already used with a different payload")
        return CommitResult(tx.event(existing.event_id), replayed=True)
    call, at = request.call, request.occurred_at
    usage, price = request.price(call, request.usage, at)
    applied = engine.resolve(
        tx.budgets_for(call.subject.tenant), call, at, request.currency, tx.rates()
    )
    amounts = engine.amounts(applied, usage)
    tx.add(_usage_deltas(applied, amounts))
    event = _append(
        tx,
        Event(
            request.request_id,
            request.status,
            call.subject,
            call.provider or "",
            call.model or "",
            usage,
            at,
            now,
            request.currency,
            reason=request.reason,
            price=price,
            payload_hash=request.payload_hash,
        ),
    )
    # The request id is remembered like an authorization's, so a retry is recognised.
    tx.insert_reservation(_recorded(request, event))
    return CommitResult(event, _adjustments(applied, amounts, ()))


def _recorded(request: RecordRequest, event: Event) -> Reservation:
    at, digest = request.occurred_at, request.payload_hash
    return Reservation(
        request.request_id, event.subject, event.provider, event.model, event.usage, (), at, at,
        digest, ReservationState.COMMITTED, digest, event.id,
    )  # fmt: skip


def pick(
    found: Sequence[Reservation], request_id: str, tenant: str | None, strict: bool = True
) -> Reservation | None:
    """``tenant``'s reservation among ``found``, every tenant's under ``request_id``.

    Request ids belong to their tenant: two tenants may use the same one, and
    another tenant's looks like none at all. Without a tenant (the library,
    an admin) a request id used by one tenant only is that tenant's; one used
    by several is refused, naming ``tenant`` (``strict=False``: None instead).
    """
    if tenant is not None:
        for reservation in found:
            if reservation.subject.tenant == tenant:
                return reservation
        return None
    if len(found) > 1:
        if not strict:
            return None
        raise ValidationError(
            "tenant", f"request id {request_id!r} is used by several tenants: name the tenant"
        )
    return found[0] if found else None


def release(
    tx: Tx, request_id: str, reason: str, now: datetime, tenant: str | None = None
) -> ReservationState:
    """Drop a held reservation; releasing twice or after commit changes nothing."""
    reservation = pick(tx.reservations(request_id), request_id, tenant)
    if reservation is None:
        raise NotFoundError(f"no authorization with request id {request_id!r}")
    if reservation.state is ReservationState.HELD:
        _release(tx, reservation, reason, now)
        return ReservationState.RELEASED
    return reservation.state


def _release(tx: Tx, reservation: Reservation, reason: str, now: datetime) -> None:
    tx.add(_unreserve([reservation]))
    _released(tx, reservation, reason, now)


def _unreserve(reservations: Sequence[Reservation]) -> list[Delta]:
    return merge_deltas([(c.budget_key, c.member, c.bucket, 0, -c.amount)
                         for r in reservations for c in r.charges])  # fmt: skip


def _released(tx: Tx, reservation: Reservation, reason: str, now: datetime) -> None:
    _append(
        tx,
        Event(
            reservation.request_id,
            EventStatus.RELEASED,
            reservation.subject,
            reservation.provider,
            reservation.model,
            NOTHING_USED,
            reservation.authorized_at,
            now,
            currency="",
            reason=reason,
            estimate=reservation.estimate,
        ),
    )
    tx.update_reservation(reservation.moved(ReservationState.RELEASED))


def sweep(tx: Tx, now: datetime, limit: int) -> int:
    """Release reservations whose TTL has passed; returns how many."""
    expired = tx.expired(now, limit)
    # Counters first, all at once, as every other operation takes them: the
    # lock order stays counters before rollups, so sweeps cannot deadlock.
    tx.add(_unreserve(expired))
    for reservation in expired:
        _released(tx, reservation, "expired", now)
    return len(expired)


def status(tx: Tx, call: Call, now: datetime) -> list[BudgetView]:
    """Every budget that applies to ``call`` at ``now``, as it stands."""
    applied = engine.resolve(tx.budgets_for(call.subject.tenant), call, now)
    return [engine.view(a, c) for a, c in zip(applied, tx.read(applied), strict=True)]


def find_budget(tx: Tx, budget_id: str, tenant: str | None) -> Budget:
    """The budget ``budget_id`` as ``tenant`` sees it: its own, else the deployment-wide
    one; without a tenant, the deployment-wide one, else the only tenant's with that id.

    Budget ids are scoped by tenant, so several tenants may each have one: then
    the tenant must be named (ValidationError naming ``tenant``).
    """
    check_identifier(tenant, "tenant")
    found = [b for b in tx.budgets_named(budget_id) if tenant is None or b.tenant in (None, tenant)]
    if not found:
        raise NotFoundError(f"no budget with id {budget_id!r}")
    if len(found) > 1:  # tenant budgets only: none shares its id with a deployment-wide one
        message = f"budget {budget_id!r} exists in {len(found)} tenants: name the tenant"
        raise ValidationError("tenant", message)
    return found[0]


def claim_budget_id(tx: Tx, budget: Budget) -> None:
    """Refuse a budget whose id a budget of the other scope has (ConflictError).

    Tenants may share an id, but a tenant budget never shares its id with a
    deployment-wide one: decisions, refusals and the ledger name budgets by id,
    and a tenant sees the deployment-wide budgets beside its own. Configuration
    writes are serialised first, so two transactions cannot both claim an id.
    """
    tx.lock_config()
    for other in tx.budgets_named(budget.id):
        if other.tenant is None and budget.tenant is not None:
            raise ConflictError(budget.id, "a deployment-wide budget has this id")
        if other.tenant is not None and budget.tenant is None:
            raise ConflictError(budget.id, "tenant budgets have this id")


def _append(tx: Tx, event: Event) -> Event:
    stored = tx.append(event)
    tx.bump_rollup(*rollup_of(stored))
    return stored


def rollup_of(event: Event) -> tuple[RollupKey, tuple[int, ...]]:
    """The hourly rollup row an event adds to, and what it adds."""
    subject, usage = event.subject, event.usage
    hour = int(event.occurred_at.timestamp()) // 3600 * 3600
    key: RollupKey = (
        subject.tenant,
        hour,
        subject.user or "",
        subject.key or "",
        subject.agent or "",
        subject.feature or "",
        event.provider,
        event.model,
        str(event.status),  # StrEnum: its value, without .value's Python-level descriptor
    )
    # ROLLUP_TOTALS is the Usage field order, cost last (None: not priced, adds 0)
    return key, (1, *usage[:-1], usage.cost_micros or 0)


def usage(tx: Tx, query: UsageQuery) -> list[UsageRow]:
    """Totals grouped by ``query.by``, read from hourly rollups (never the ledger)."""
    _check_usage_query(query)
    since = None if query.since is None else int(query.since.timestamp()) // 3600 * 3600
    until = None if query.until is None else int(query.until.timestamp())
    groups: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * (3 + len(ROLLUP_TOTALS)))
    for key, values in tx.rollups(query.tenant, since, until):
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


def _check_usage_query(query: UsageQuery) -> None:
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


def rebuild_counters(tx: Tx, budgets: Sequence[Budget]) -> int:
    """Recompute the counters of ``budgets`` from the ledger and held reservations.

    Applies the budgets' *current* definitions to the whole history, so it
    also backfills a budget created after usage happened. Archived history
    counts as it was counted when it was archived (``counter_baseline``).
    """
    ids = {b.key for b in budgets}
    tx.clear_counters(sorted(ids))
    totals: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for key, used in tx.baseline(sorted(ids)).items():
        totals[key][0] += used
    tenants = {b.tenant for b in budgets}
    scope = None if None in tenants or len(tenants) != 1 else next(iter(tenants))
    events = list(tx.counting_events(scope))
    for key, used in _contributions(tx, events, ids).items():
        totals[key][0] += used
    for reservation in tx.held():
        for charge in reservation.charges:
            if charge.budget_key in ids:
                totals[(charge.budget_key, charge.member, charge.bucket)][1] += charge.amount
    tx.add([(b, m, k, used, reserved) for (b, m, k), (used, reserved) in totals.items()])
    return len(events)


def _contributions(
    tx: Tx, events: Iterable[Event], ids: set[str] | None
) -> dict[tuple[str, str, int], int]:
    """What counting ``events`` add to the counters of budgets ``ids`` (None: all)."""
    totals: dict[tuple[str, str, int], int] = defaultdict(int)
    rates = tx.rates()
    for event in events:
        if not event.status.counts:
            continue
        call = Call(event.subject, event.provider, event.model)
        # Resolve against all the tenant's budgets: an override elsewhere
        # changes whether one of ``ids`` counts this event.
        applied = engine.resolve(
            tx.budgets_for(event.subject.tenant), call, event.occurred_at, event.currency, rates
        )
        for hit in applied:
            if ids is None or hit.budget.key in ids:
                totals[(hit.budget.key, hit.member, hit.span.bucket)] += hit.amount(event.usage)
    return totals


#: meta key: the ledger holds no events before this hour (epoch seconds) but late ones
ARCHIVED_BEFORE = "archived_before"


def archive_page(tx: Tx, page: Sequence[Event]) -> None:
    """Move ``page`` (already written to the archive) out of the ledger.

    What the events added to counters goes into the counter baseline, so a
    rebuild still counts them; their hourly rollups stay where they are.
    """
    totals = _contributions(tx, page, None)
    tx.add_baseline([(b, m, k, used) for (b, m, k), used in totals.items() if used])
    tx.delete_events([e.id for e in page if e.id is not None])


def finish_archive(tx: Tx, cutoff: datetime) -> int:
    """Forget finished request ids before ``cutoff``; record the cutoff. Returns how many."""
    removed = tx.delete_finished_reservations(cutoff)
    hour = int(cutoff.timestamp())
    previous = tx.meta(ARCHIVED_BEFORE)
    if previous is None or int(previous) < hour:
        tx.set_meta(ARCHIVED_BEFORE, str(hour))
    return removed


def reprice_page(
    tx: Tx, request: RepriceRequest, after_id: int, now: datetime, stats: RepriceStats
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
    tx: Tx, event: Event, request: RepriceRequest, now: datetime, stats: RepriceStats
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
    applied = engine.resolve(
        tx.budgets_for(event.subject.tenant), call, event.occurred_at, event.currency, tx.rates()
    )
    tx.add([(a.budget.key, a.member, a.span.bucket, a.amount(usage) - a.amount(event.usage), 0)
            for a in applied if a.budget.meter is Meter.COST])  # fmt: skip
    key, _ = rollup_of(event)
    tx.bump_rollup(key, (0, *(0 for _ in ROLLUP_TOTALS[:-1]), new - old))
    stats.changed += 1
    stats.delta_micros += new - old


def _without_history(price: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in price.items() if k != "previous"}


def rebuild(tx: Tx) -> RebuildStats:
    """Recompute every counter and rollup from the ledger."""
    budgets = list(tx.all_budgets(None))
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
