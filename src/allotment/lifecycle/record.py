"""Record: meter a call that was never authorized (post-hoc ingestion), idempotently."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from allotment.core import engine
from allotment.core.budgets import Call
from allotment.core.engine import Applied
from allotment.core.ledger import (
    CommitResult,
    Event,
    EventStatus,
    Reservation,
    ReservationState,
    same_payload,
)
from allotment.core.usage import Usage
from allotment.errors import ConflictError
from allotment.lifecycle import credits, plans
from allotment.lifecycle._shared import (
    PriceFn,
    adjustments,
    append,
    counted_by,
    no_price,
    pick,
    usage_deltas,
    used_event,
)
from allotment.lifecycle.topups import topped_up
from allotment.lifecycle.tx import CallTx, Configured, Key, PlannedTx

__all__ = ["RecordRequest", "footprint", "record"]


@dataclass(slots=True)
class RecordRequest:
    """Meter a call that was never authorized (post-hoc ingestion)."""

    request_id: str
    call: Call
    usage: Usage
    status: EventStatus
    occurred_at: datetime
    payload_hash: str
    currency: str
    price: PriceFn = no_price
    reason: str | None = None
    #: the parts ``payload_hash`` was made of (to match a fingerprint kept by an older version)
    payload: tuple[object, ...] = ()
    #: take the member's plan from the subject's ``plan`` tag (callers are trusted)
    plan_from_subject: bool = False


def footprint(tx: PlannedTx, request: RecordRequest) -> set[Key]:
    """The counters ``record`` will charge, its member's plan's among them."""
    call = plans.planned(tx, request.call, request.plan_from_subject)
    return engine.locked_by(counted_by(tx, call, request.occurred_at, request.currency))


def _counted(tx: Configured, request: RecordRequest) -> list[Applied]:
    """The budgets that count the call, in the windows of when it occurred."""
    return counted_by(tx, request.call, request.occurred_at, request.currency)


def record(tx: CallTx, request: RecordRequest, now: datetime) -> CommitResult:
    """Meter a call that was never authorized; idempotent per request id."""
    call = plans.planned(tx, request.call, request.plan_from_subject)
    if call is not request.call:  # the member's plan, written into the subject
        request = replace(request, call=call)
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
    event = used_event(request, request.call, request.occurred_at, now)
    applied = _counted(tx, request)
    amounts = engine.amounts(applied, event.usage)
    counted: list[int] = amounts
    started: tuple[str, ...] = ()
    if credits.has_credit(applied):  # a pool's allowance has room for part; grants the rest
        counted, pools, _ = credits.settle(tx, applied, amounts, (), True, now, request.request_id)
        started = tuple(t.id for t in topped_up(tx, pools))
    tx.add(usage_deltas(applied, counted))
    event = append(tx, event)
    # The request id is remembered like an authorization's, so a retry is recognised.
    tx.insert_reservation(_recorded(request, event))
    return CommitResult(event, adjustments(applied, amounts, ()), topups=started)


def _recorded(request: RecordRequest, event: Event) -> Reservation:
    at, digest = request.occurred_at, request.payload_hash
    return Reservation(
        request.request_id, event.subject, event.provider, event.model, event.usage, (), at, at,
        digest, ReservationState.COMMITTED, digest, event.id,
    )  # fmt: skip
