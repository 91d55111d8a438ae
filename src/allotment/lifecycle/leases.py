"""Leases: reservations that hold slots of concurrency budgets, kept alive by heartbeats.

A lease is taken by an authorize that a ``concurrency`` budget counts (alone or
with token and cost budgets: "start an agent run"), or that names a maximum
duration. It holds one slot of each such budget: the counter's ``reserved``
says how many are taken, and one ``lease_slots`` row per slot says which lease
holds it until when. Commit, release and expiry end it in the same
transaction as they give its counters back, so a slot cannot leak, and
releasing twice changes nothing.

``heartbeat`` extends a live lease to min(now + ttl, started + max_duration) and
never revives an expired one. Expired leases are reclaimed lazily: by the
sweep, and by an authorize that finds every slot of a budget taken (before it
refuses), each written to the ledger as a release with reason
``lease_expired``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from allotment.core import engine
from allotment.core.budgets import Call
from allotment.core.decisions import BudgetView, Reason, Refusal
from allotment.core.engine import Applied
from allotment.core.ledger import Reservation, ReservationState
from allotment.core.usage import Meter
from allotment.errors import NotFoundError
from allotment.lifecycle._shared import pick
from allotment.lifecycle.tx import CallTx, Slot

__all__ = [
    "EXPIRED",
    "Heartbeat",
    "end",
    "heartbeat",
    "reclaim",
    "retry_at",
    "slots",
]

#: the ledger reason of a lease reclaimed after its TTL (or maximum duration) passed
EXPIRED = "lease_expired"
#: how many expired leases an authorize reclaims from one budget before it refuses
_RECLAIM = 16


def slots(applied: Sequence[Applied], tenant: str, request_id: str, until: datetime) -> list[Slot]:
    """The slots an allowed authorize holds: one in each concurrency budget counting it."""
    return [(a.budget.key, a.member, tenant, request_id, until)
            for a in applied if a.budget.meter is Meter.CONCURRENCY]  # fmt: skip


def end(tx: CallTx, reservation: Reservation) -> None:
    """Free a lease's slots as its reservation is committed, released or swept."""
    if reservation.slots:
        tx.drop_slots(reservation.subject.tenant, reservation.request_id)


def reclaim(
    tx: CallTx, refusals: Sequence[Refusal], applied: Sequence[Applied], now: datetime
) -> int:
    """Release the expired leases holding slots of the budgets that refused for want of
    one; returns how many (the caller then decides again)."""
    from allotment.lifecycle import release  # release ends leases through this module

    freed = 0
    for hit in _refusing(refusals, applied, Reason.CONCURRENCY_LIMITED):
        for tenant, request_id in tx.expired_slots(hit.budget.key, hit.member, now, _RECLAIM):
            held = pick(tx.reservations(request_id), request_id, tenant)
            if held is not None and held.state is ReservationState.HELD:
                release.release(tx, request_id, EXPIRED, now, tenant)
                freed += 1
    return freed


def retry_at(tx: CallTx, refusal: Refusal, applied: Sequence[Applied], now: datetime) -> Refusal:
    """``refusal`` with when to retry: for a concurrency limit, when the soonest lease
    holding one of its slots ends (its TTL, unless a heartbeat extends it)."""
    for hit in _refusing((refusal,), applied, Reason.CONCURRENCY_LIMITED):
        soonest = tx.soonest_slot(hit.budget.key, hit.member)
        if soonest is not None:
            return replace(refusal, retry_at=max(soonest, now))
    return refusal


def _refusing(
    refusals: Sequence[Refusal], applied: Sequence[Applied], reason: Reason
) -> list[Applied]:
    ids = {r.budget_id for r in refusals if r.reason is reason}
    return [a for a in applied if a.budget.id in ids]


@dataclass(slots=True)
class Heartbeat:
    """What a heartbeat answers: whether the lease lives on, until when, and whether its
    holder should stop (it ended: maximum duration, expiry, release or commit)."""

    lease_id: str
    alive: bool
    stop: bool
    #: why it stopped: max_duration, expired, released or committed (None: alive)
    reason: str | None
    expires_at: datetime | None
    max_until: datetime | None
    #: the budgets the lease counts on, as they stand
    budgets: tuple[BudgetView, ...] = ()

    def to_dict(self, *, currency: str | None = None) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "lease_id": self.lease_id,
            "alive": self.alive,
            "stop": self.stop,
            "reason": self.reason,
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "max_until": None if self.max_until is None else self.max_until.isoformat(),
            "budgets": [b.to_dict(currency=currency, display=False) for b in self.budgets],
        }


def heartbeat(
    tx: CallTx,
    lease_id: str,
    now: datetime,
    ttl_seconds: int | None,
    tenant: str | None,
    default_ttl: int,
) -> Heartbeat:
    """Extend a live lease to min(now + ttl, its maximum); an expired one is reclaimed,
    never revived. ``ttl`` is ``ttl_seconds``, else the reservation's own, else (one
    kept by an older version) ``default_ttl``."""
    from allotment.lifecycle import release

    r = pick(tx.reservations(lease_id), lease_id, tenant)
    if r is None:
        raise NotFoundError(f"no lease with id {lease_id!r}")
    if r.state is not ReservationState.HELD:
        reason = "committed" if r.state is ReservationState.COMMITTED else "released"
        return Heartbeat(lease_id, False, True, reason, None, r.max_until, _views(tx, r))
    if r.expires_at <= now:
        release.release(tx, lease_id, EXPIRED, now, r.subject.tenant)
        ended = r.max_until is not None and r.expires_at >= r.max_until
        reason = "max_duration" if ended else "expired"
        return Heartbeat(lease_id, False, True, reason, r.expires_at, r.max_until, _views(tx, r))
    ttl = ttl_seconds or r.ttl or default_ttl
    until = now + timedelta(seconds=ttl)
    if r.max_until is not None:
        until = min(until, r.max_until)
    if until > r.expires_at:
        tx.update_reservation(replace(r, expires_at=until))
        if r.slots:
            tx.extend_slots(r.subject.tenant, lease_id, until)
    else:
        until = r.expires_at  # a heartbeat never shortens a lease
    return Heartbeat(lease_id, True, False, None, until, r.max_until, _views(tx, r))


def _views(tx: CallTx, r: Reservation) -> tuple[BudgetView, ...]:
    call = Call(r.subject, r.provider, r.model)
    applied = engine.resolve(tx.budgets_for(r.subject.tenant), call, r.authorized_at)
    return tuple(engine.view(a, c) for a, c in zip(applied, tx.read(applied), strict=True))
