"""Authorize: reserve an estimate on every applicable budget, or refuse and reserve nothing."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from allotment.core import engine
from allotment.core.budgets import Call
from allotment.core.decisions import Decision, Reason, Refusal, Skipped, Uncovered, Warning
from allotment.core.engine import Applied, Counter
from allotment.core.ledger import (
    NOTHING_USED,
    Charge,
    Event,
    EventStatus,
    Reservation,
    same_payload,
)
from allotment.core.routes import BACKEND_TAG, Route
from allotment.core.usage import Usage
from allotment.errors import ConflictError
from allotment.lifecycle import credits, leases, limits, plans, topups
from allotment.lifecycle._shared import append, counted_by, pick
from allotment.lifecycle.tx import CallTx, Key, PlannedTx, StatusTx

__all__ = ["NO_BUDGET", "AuthorizeRequest", "Candidate", "authorize", "footprint"]

#: the warning of a call no budget covers (``uncovered: warn``)
NO_BUDGET = Warning(None, Reason.NO_BUDGET.value, None)


@dataclass(slots=True)
class AuthorizeRequest:
    """Reserve ``estimate`` for ``call`` until ``ttl_seconds`` from now."""

    request_id: str
    call: Call
    estimate: Usage
    ttl_seconds: int
    payload_hash: str
    price: dict[str, Any] = field(default_factory=dict)
    #: decided before the store was asked (an unknown model under ``deny``)
    refusal: Refusal | None = None
    #: the currency of the estimate's cost
    currency: str | None = None
    #: the parts ``payload_hash`` was made of (to match a fingerprint kept by an older version)
    payload: tuple[object, ...] = ()
    #: warnings known before the store was asked (an unknown model priced at the fallback)
    warnings: tuple[Warning, ...] = ()
    #: what to do when no budget applies
    uncovered: Uncovered = Uncovered.WARN
    #: take the member's plan from the subject's ``plan`` tag (callers are trusted)
    plan_from_subject: bool = False
    #: a lease's maximum duration: heartbeats never extend it past this (None: no maximum)
    max_duration_seconds: int | None = None
    #: route candidates in order, the first being ``call`` itself (none: just ``call``)
    routes: tuple[Candidate, ...] = ()


@dataclass(slots=True)
class Candidate:
    """A route candidate, priced and estimated before the store was asked."""

    route: Route
    #: the call as this route serves it (its backend in the subject's tags)
    call: Call
    estimate: Usage
    price: dict[str, Any] = field(default_factory=dict)
    refusal: Refusal | None = None
    warnings: tuple[Warning, ...] = ()


def footprint(tx: PlannedTx, request: AuthorizeRequest, now: datetime) -> set[Key]:
    """The counters ``authorize`` will read or charge, its member's plan's among them, for
    every route candidate (a replay, at its own authorization time, may read others: a
    batch locks those on demand, as it does a grant's)."""
    keys: set[Key] = set()
    for call in [c.call for c in request.routes] or [request.call]:
        call = plans.planned(tx, call, request.plan_from_subject)
        keys |= engine.locked_by(counted_by(tx, call, now, request.currency))
    return keys


@dataclass(slots=True)
class _Admission:
    """What admission decided for one call, before anything is written."""

    decision: Decision
    charges: tuple[Charge, ...]
    applied: list[Applied]
    counters: list[Counter]
    expires_at: datetime
    max_until: datetime | None


def authorize(tx: CallTx, request: AuthorizeRequest, now: datetime) -> Decision:
    """Reserve on every applicable budget (of the first route candidate that has room),
    or refuse and reserve nothing."""
    request = _planned(tx, request)
    existing = pick(
        tx.reservations(request.request_id), request.request_id, request.call.subject.tenant
    )
    if existing is not None:
        if not same_payload(existing.payload_hash, request.payload_hash, request.payload):
            raise ConflictError(request.request_id, "reused with a different authorize payload")
        return _replay(tx, existing, bool(request.routes))
    if request.routes:
        return _routed(tx, request, now)
    admission = _admit(tx, request, now)
    if admission.decision.allowed:
        _reserve(tx, request, admission, now)
        _shadowed(tx, request, admission.decision, now)
        return admission.decision
    return _refuse(tx, request, admission, now)


def _planned(tx: CallTx, request: AuthorizeRequest) -> AuthorizeRequest:
    """``request`` with the member's plan written into its subject."""
    call = plans.planned(tx, request.call, request.plan_from_subject)
    return request if call is request.call else replace(request, call=call)


def _routed(tx: CallTx, request: AuthorizeRequest, now: datetime) -> Decision:
    """Try the route candidates in order; reserve on the first whose budgets all pass."""
    asked = request.routes[0].route
    skipped: list[Skipped] = []
    first: tuple[AuthorizeRequest, Decision] | None = None
    for candidate in request.routes:
        tried = request if candidate is request.routes[0] else _planned(tx, replace(
            request, call=candidate.call, estimate=candidate.estimate, price=candidate.price,
            refusal=candidate.refusal, warnings=candidate.warnings,
        ))  # fmt: skip
        admission = _admit(tx, tried, now)
        if admission.decision.allowed:
            # Served by this route: its subject keeps the route asked for, if another.
            subject = candidate.route.subject(tried.call.subject, asked)
            served = replace(tried, call=tried.call._replace(subject=subject))
            _reserve(tx, served, admission, now)
            _shadowed(tx, served, admission.decision, now)
            return replace(admission.decision, route=candidate.route, skipped=tuple(skipped))
        decision = limits.timed(tx, admission.decision, admission.applied, admission.counters, now)
        skipped.append(Skipped(candidate.route, decision.refusals, decision.budgets))
        first = first or (tried, decision)
    assert first is not None  # routes are never empty
    tried, decision = first
    _noted(tx, tried, decision.refusals[0], now)
    _shadowed(tx, tried, decision, now)
    return replace(decision, skipped=tuple(skipped))


def _admit(tx: CallTx, request: AuthorizeRequest, now: datetime) -> _Admission:
    """Decide whether the call fits; reserve and write nothing (but reclaim expired
    leases whose slots it lacks, and the credit holds a granted decision takes)."""
    applied = counted_by(tx, request.call, now, request.currency)
    counters = tx.read(applied)
    expires_at = now + timedelta(seconds=request.ttl_seconds)
    max_duration = request.max_duration_seconds
    max_until = None if max_duration is None else now + timedelta(seconds=max_duration)
    if max_until is not None:
        expires_at = min(expires_at, max_until)
    refusal = request.refusal
    if refusal is None and not applied and request.uncovered is Uncovered.DENY:
        refusal = Refusal(None, Reason.NO_BUDGET, 0, 0, 0, None)
    if refusal is not None:
        views = tuple(engine.view(a, c) for a, c in zip(applied, counters, strict=True))
        refused = Decision(request.request_id, False, views, (refusal,))
        return _Admission(refused, (), applied, counters, expires_at, max_until)
    decision, charges = _decide(tx, request, applied, counters, expires_at, now)
    if not decision.allowed and leases.reclaim(tx, decision.refusals, applied, now):
        # Expired leases held the slots it lacked: given back, it may fit now.
        counters = tx.read(applied)
        decision, charges = _decide(tx, request, applied, counters, expires_at, now)
    if request.warnings or (not applied and request.uncovered is Uncovered.WARN):
        decision = _flagged(decision, request, bool(applied))
    return _Admission(decision, charges, applied, counters, expires_at, max_until)


def _reserve(tx: CallTx, request: AuthorizeRequest, admission: _Admission, now: datetime) -> None:
    """Hold the admitted call's charges, and its slots if it is a lease."""
    call, charges, expires_at = request.call, admission.charges, admission.expires_at
    tx.add([(c.budget_key, c.member, c.bucket, 0, c.amount) for c in charges])
    slots = leases.slots(admission.applied, call.subject.tenant, request.request_id, expires_at)
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
            ttl=request.ttl_seconds,
            max_until=admission.max_until,
            slots=len(slots),
        )
    )
    if slots:
        tx.insert_slots(slots)


def _refuse(
    tx: CallTx, request: AuthorizeRequest, admission: _Admission, now: datetime
) -> Decision:
    """The refusal, with when to retry a limit that passes by itself, in the ledger."""
    decision = limits.timed(tx, admission.decision, admission.applied, admission.counters, now)
    _noted(tx, request, decision.refusals[0], now)
    _shadowed(tx, request, decision, now)
    return decision


def _decide(
    tx: CallTx,
    request: AuthorizeRequest,
    applied: list[Applied],
    counters: list[Counter],
    expires_at: datetime,
    now: datetime,
) -> tuple[Decision, tuple[Charge, ...]]:
    if credits.has_credit(applied):
        return _with_credit(tx, request, applied, counters, expires_at, now)
    return engine.decide(request.request_id, applied, counters, request.estimate, expires_at)


def _with_credit(
    tx: CallTx,
    request: AuthorizeRequest,
    applied: list[Applied],
    counters: list[Counter],
    expires_at: datetime,
    now: datetime,
) -> tuple[Decision, tuple[Charge, ...]]:
    """``engine.decide`` when credit pools count the call: each pool's grants add to its
    room, and hold what its allowance has no room for."""
    pools = credits.open_pools(tx, applied, now)
    amounts = engine.held(applied, request.estimate)
    decision, charges = engine.decide(
        request.request_id, applied, counters, request.estimate, expires_at,
        credit=credits.credit_of(applied, pools),
    )  # fmt: skip
    charges = credits.hold(tx, pools, decision, charges, amounts, request.request_id)
    topups.report(tx, [(applied[i].budget, pool) for i, pool in pools.items()], decision.budgets)
    return decision, charges


def _flagged(decision: Decision, request: AuthorizeRequest, covered: bool) -> Decision:
    """``decision`` with the warnings no budget raised: an unknown model, no budget."""
    flags = request.warnings if covered else (*request.warnings, NO_BUDGET)
    return replace(decision, warnings=(*decision.warnings, *flags))


def _shadowed(tx: CallTx, request: AuthorizeRequest, decision: Decision, now: datetime) -> None:
    """In the ledger: what shadow budgets would have refused of the call."""
    for refusal in decision.shadow_refusals:
        _noted(tx, request, refusal, now, EventStatus.SHADOW)


def _noted(
    tx: CallTx,
    request: AuthorizeRequest,
    refusal: Refusal,
    now: datetime,
    status: EventStatus = EventStatus.BLOCKED,
) -> None:
    """A ledger entry of a refusal (``blocked``) or of a shadow budget's (``shadow``):
    nothing used, the estimate asked for, the budget and its reason."""
    call = request.call
    append(
        tx,
        Event(
            request.request_id,
            status,
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


def _replay(tx: StatusTx, reservation: Reservation, routed: bool = False) -> Decision:
    call = Call(reservation.subject, reservation.provider, reservation.model)
    applied = engine.resolve(tx.budgets_for(call.subject.tenant), call, reservation.authorized_at)
    views = tuple(engine.view(a, c) for a, c in zip(applied, tx.read(applied), strict=True))
    route = None
    if routed:
        backend = dict(reservation.subject.tags).get(BACKEND_TAG)
        route = Route(reservation.provider, reservation.model, backend)
    return Decision(
        reservation.request_id,
        allowed=True,
        budgets=views,
        expires_at=reservation.expires_at,
        replayed=True,
        route=route,
    )
