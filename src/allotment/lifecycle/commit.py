"""Commit: swap a reservation for what the call really used, in the authorization's windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from allotment.core import engine
from allotment.core.budgets import Call
from allotment.core.engine import Applied, Counter
from allotment.core.ledger import (
    Adjustment,
    Charge,
    CommitResult,
    EventStatus,
    Overshoot,
    Reservation,
    ReservationState,
    same_payload,
)
from allotment.core.subjects import Subject
from allotment.core.usage import Usage
from allotment.errors import ConflictError, NotFoundError
from allotment.lifecycle import credits, leases, topups
from allotment.lifecycle import record as recording
from allotment.lifecycle._shared import (
    PriceFn,
    adjustments,
    append,
    counted_by,
    merge_deltas,
    no_price,
    pick,
    usage_deltas,
    used_event,
)
from allotment.lifecycle.tx import CallTx, Configured, Delta, Key, PlannedTx

__all__ = ["CommitRequest", "commit", "footprint"]


@dataclass(slots=True)
class CommitRequest:
    """Replace a reservation with what the call really used.

    ``subject`` (with ``provider`` and ``model``) lets a commit for a request
    id that was never authorized be metered post hoc.
    """

    request_id: str
    usage: Usage
    status: EventStatus
    payload_hash: str
    currency: str
    price: PriceFn = no_price
    reason: str | None = None
    provider: str | None = None
    model: str | None = None
    subject: Subject | None = None
    #: whose request id: the caller's tenant, else the subject's (None: any, for
    #: admins and the library, when one tenant uses the id)
    tenant: str | None = None
    #: the parts ``payload_hash`` was made of (to match a fingerprint kept by an older version)
    payload: tuple[object, ...] = ()
    #: a post-hoc commit takes the member's plan from the subject (callers are trusted)
    plan_from_subject: bool = False


def footprint(
    tx: PlannedTx, request: CommitRequest, now: datetime, found: Sequence[Reservation]
) -> set[Key]:
    """The counters ``commit`` will read or charge, given the request id's reservations.

    As far as can be known before running it: when several tenants use the
    request id and the request names none, the step itself refuses.
    """
    reservation = pick(found, request.request_id, request.tenant, strict=False)
    if reservation is None:
        post_hoc = _post_hoc(request, now)
        return set() if post_hoc is None else recording.footprint(tx, post_hoc)
    if reservation.state is ReservationState.COMMITTED:
        return set()  # a replay reads nothing
    keys = engine.locked_by(_counted(tx, request, reservation))
    if reservation.state is ReservationState.HELD:  # a late commit's charges are gone
        keys.update((c.budget_key, c.member, c.bucket) for c in reservation.charges)
    return keys


def _call(request: CommitRequest, reservation: Reservation) -> Call:
    """The call as authorized, with the provider and model the commit names instead."""
    return Call(
        reservation.subject,
        request.provider or reservation.provider,
        request.model or reservation.model,
    )


def _counted(tx: Configured, request: CommitRequest, reservation: Reservation) -> list[Applied]:
    """The budgets that count the call: in the authorization's windows."""
    return counted_by(tx, _call(request, reservation), reservation.authorized_at, request.currency)


def _post_hoc(request: CommitRequest, now: datetime) -> recording.RecordRequest | None:
    """A commit of a call never authorized, as the record that meters it now (None
    without the subject, provider and model that takes)."""
    if request.subject is None or request.provider is None or request.model is None:
        return None
    return recording.RecordRequest(
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
        request.plan_from_subject,
    )


def commit(tx: CallTx, request: CommitRequest, now: datetime) -> CommitResult:
    """Swap a reservation for the actual usage, in the authorization's windows."""
    reservation = pick(tx.reservations(request.request_id), request.request_id, request.tenant)
    if reservation is None:
        post_hoc = _post_hoc(request, now)
        if post_hoc is None:
            raise NotFoundError(
                f"request {request.request_id!r} was never authorized; to meter it post hoc "
                "give subject, provider and model"
            )
        return recording.record(tx, post_hoc, now)
    if reservation.state is ReservationState.COMMITTED:
        if reservation.event_id is None or not same_payload(
            reservation.commit_hash, request.payload_hash, request.payload
        ):
            raise ConflictError(request.request_id, "already committed with different usage")
        return CommitResult(tx.event(reservation.event_id), replayed=True)
    late = reservation.state is ReservationState.RELEASED
    event = used_event(request, _call(request, reservation), reservation.authorized_at, now)
    applied = _counted(tx, request, reservation)
    amounts = engine.amounts(applied, event.usage)
    charges = reservation.charges
    if credits.has_credit(applied) or credits.holds_credit(charges):
        # Pools take what their allowance has room for; their grants and debt the rest.
        counted, pools, kept = credits.settle(
            tx, applied, amounts, charges, late, now, request.request_id
        )
        started = tuple(t.id for t in topups.topped_up(tx, pools))
        own = credits.budget_charges(charges)
        released = [] if late else [(c.budget_key, c.member, c.bucket, 0, -c.amount) for c in own]
        deltas = merge_deltas(released + usage_deltas(applied, counted) + kept)
        adjusted = adjustments(applied, amounts, own)
    else:
        counted, started = amounts, ()
        deltas, adjusted = _settle(applied, amounts, charges, late)
    overshoot = _late_overshoot(applied, tx.read(applied), counted) if late else ()
    tx.add(deltas)
    event = append(tx, event)
    tx.update_reservation(
        reservation.moved(ReservationState.COMMITTED, request.payload_hash, event.id)
    )
    if not late:
        leases.end(tx, reservation)
    return CommitResult(event, adjusted, late=late, late_overshoot=overshoot, topups=started)


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
        adjusted = tuple(
            Adjustment(a.budget.id, c.member, c.amount, n, a.budget.meter.value, a.budget.currency)
            for a, c, n in zip(applied, charges, amounts, strict=True)
        )
        return deltas, adjusted
    # Budgets changed since (created, deleted, a new window): merge what overlaps.
    released = [] if late else [(c.budget_key, c.member, c.bucket, 0, -c.amount) for c in charges]
    deltas = merge_deltas(released + usage_deltas(applied, amounts))
    return deltas, adjustments(applied, amounts, charges)
