"""Release: give a held reservation back; ``sweep`` gives back those whose TTL has passed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from allotment.core.ledger import Reservation, ReservationState
from allotment.errors import NotFoundError
from allotment.lifecycle import credits, leases
from allotment.lifecycle._shared import append, merge_deltas, pick, released_event
from allotment.lifecycle.tx import CallTx, Delta, SweepTx

__all__ = ["release", "sweep"]


def release(
    tx: CallTx, request_id: str, reason: str, now: datetime, tenant: str | None = None
) -> ReservationState:
    """Drop a held reservation; releasing twice or after commit changes nothing."""
    reservation = pick(tx.reservations(request_id), request_id, tenant)
    if reservation is None:
        raise NotFoundError(f"no authorization with request id {request_id!r}")
    if reservation.state is ReservationState.HELD:
        tx.add(_unreserve([reservation]))
        _released(tx, reservation, reason, now)
        credits.release(tx, reservation.charges, now, request_id)
        leases.end(tx, reservation)
        return ReservationState.RELEASED
    return reservation.state


def sweep(tx: SweepTx, now: datetime, limit: int) -> int:
    """Release reservations whose TTL has passed; returns how many."""
    expired = tx.expired(now, limit)
    # Counters first, all at once, as every other operation takes them: the
    # lock order stays counters before rollups, so sweeps cannot deadlock.
    tx.add(_unreserve(expired))
    for reservation in expired:
        _released(tx, reservation, leases.EXPIRED if reservation.leased else "expired", now)
        credits.release(tx, reservation.charges, now, reservation.request_id)
        leases.end(tx, reservation)
    return len(expired)


def _unreserve(reservations: Sequence[Reservation]) -> list[Delta]:
    """The budgets' holds given back (grants' holds: ``credits.release``, with their entries)."""
    own = (c for r in reservations for c in credits.budget_charges(r.charges))
    return merge_deltas([(c.budget_key, c.member, c.bucket, 0, -c.amount) for c in own])


def _released(tx: CallTx, reservation: Reservation, reason: str, now: datetime) -> None:
    append(tx, released_event(reservation, reason, now))
    tx.update_reservation(reservation.moved(ReservationState.RELEASED))
