"""Ledger events, reservations and what commit reports back.

The ledger is append-only: every outcome (a call that succeeded or failed, a
refusal, a released reservation) is one event. Counters are derived from it.

Events, reservations and results are output records (plain slotted
dataclasses, cheap on the hot path); treat them as values.

Usage belongs to the window that contains the *authorization* time (for
post-hoc events, their ``occurred_at``): a call authorized at 23:59:59 and
committed after midnight counts toward the day it was allowed in, so the
check made at authorization and the charge always concern the same window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from allotment.core.subjects import Subject
from allotment.core.units import UNITS, shown_usage
from allotment.core.usage import Usage

__all__ = [
    "CHARGE_WIDTH",
    "NOTHING_USED",
    "Adjustment",
    "Charge",
    "CommitResult",
    "Event",
    "EventStatus",
    "Overshoot",
    "Reservation",
    "ReservationState",
    "charge_from_row",
    "payload_hash",
    "same_payload",
]


class EventStatus(StrEnum):
    """The outcome an event records."""

    SUCCESS = "success"
    ERROR = "error"
    BLOCKED = "blocked"
    RELEASED = "released"
    #: what a shadow budget would have refused (the call itself is another event)
    SHADOW = "shadow"

    @property
    def counts(self) -> bool:
        """Whether usage of events with this status counts toward budgets."""
        return self in (EventStatus.SUCCESS, EventStatus.ERROR)


#: the usage of an event whose call never ran (blocked, released): no request, no cost
NOTHING_USED = Usage(requests=0, cost_micros=0)


class ReservationState(StrEnum):
    """Life of a reservation: held until committed or released (or expired)."""

    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"


class Charge(NamedTuple):
    """What one reservation holds on one counter (its budget's ``Budget.key``)."""

    budget_key: str
    member: str
    bucket: int
    amount: int


#: how many values a charge has: a stored row keeps each charge as this many
CHARGE_WIDTH = len(Charge._fields)
_tuple_new = tuple.__new__


def charge_from_row(values: Sequence[Any]) -> Charge:
    """A ``Charge`` from values in field order, unchecked: Charge's one positional codec.

    Every shortcut past the constructor comes through here, where values one
    field short (a field added to ``Charge``, a caller left behind) fail the
    assert instead of making a short tuple.
    """
    assert len(values) == CHARGE_WIDTH, f"{len(values)} values for Charge's {CHARGE_WIDTH}"
    # tuple.__new__, not Charge(*values): 4.5k of 394k instructions a pair (bench.instructions)
    return _tuple_new(Charge, values)


@dataclass(slots=True)
class Reservation:
    """A granted authorization, held until commit, release or expiry."""

    request_id: str
    subject: Subject
    provider: str
    model: str
    estimate: Usage
    charges: tuple[Charge, ...]
    authorized_at: datetime
    expires_at: datetime
    payload_hash: str
    state: ReservationState = ReservationState.HELD
    commit_hash: str | None = None
    event_id: int | None = None
    #: its TTL in seconds: what a heartbeat extends it by (None: kept by an older version)
    ttl: int | None = None
    #: when a lease reaches its maximum duration (None: no maximum)
    max_until: datetime | None = None
    #: how many slots of concurrency budgets it holds (``allotment.lifecycle.leases``)
    slots: int = 0

    @property
    def leased(self) -> bool:
        """Whether this reservation is a lease: it holds slots, or has a maximum duration."""
        return self.slots > 0 or self.max_until is not None

    def moved(
        self, state: ReservationState, commit_hash: str | None = None, event_id: int | None = None
    ) -> Reservation:
        """The reservation in its next state (committed or released)."""
        return Reservation(
            self.request_id, self.subject, self.provider, self.model, self.estimate, self.charges,
            self.authorized_at, self.expires_at, self.payload_hash, state, commit_hash, event_id,
            self.ttl, self.max_until, self.slots,
        )  # fmt: skip


@dataclass(slots=True)
class Event:
    """One ledger entry.

    ``occurred_at`` decides the window (the authorization time for an
    authorized call); ``recorded_at`` is when the ledger learned of it.
    ``usage`` is what the call used: nothing for ``blocked`` and ``released``
    events (``NOTHING_USED``), whose ``estimate`` keeps what was asked for.
    """

    request_id: str
    status: EventStatus
    subject: Subject
    provider: str
    model: str
    usage: Usage
    occurred_at: datetime
    recorded_at: datetime
    currency: str
    reason: str | None = None
    budget_id: str | None = None
    price: dict[str, Any] = field(default_factory=dict)
    payload_hash: str | None = None
    id: int | None = None
    #: what a refused or released call had reserved (or asked to), priced
    estimate: Usage | None = None

    def with_id(self, event_id: int) -> Event:
        """The event as stored, with the id the ledger gave it."""
        return Event(
            self.request_id, self.status, self.subject, self.provider, self.model, self.usage,
            self.occurred_at, self.recorded_at, self.currency, self.reason, self.budget_id,
            self.price, self.payload_hash, event_id, self.estimate,
        )  # fmt: skip

    def to_dict(self, *, display: bool = False) -> dict[str, Any]:
        """JSON-safe form; ``display`` adds ``usage`` and ``estimate`` in human units.

        Usage figures are integers whose names carry their units (``*_tokens``,
        ``audio_ms``, ``cost_micros`` in micro-units of ``currency``). The human
        form names them as the input takes them (``audio_seconds``, ``cost``);
        see ``allotment.core.units``. Left out by default: commits answer with
        the event, and archives store it.
        """
        out = {
            "id": self.id,
            "request_id": self.request_id,
            "status": self.status.value,
            "subject": self.subject.to_dict(),
            "provider": self.provider,
            "model": self.model,
            "usage": self.usage.to_dict(),
            "estimate": None if self.estimate is None else self.estimate.to_dict(),
            "currency": self.currency,
            "price": self.price,
            "reason": self.reason,
            "budget_id": self.budget_id,
            "occurred_at": self.occurred_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
        }
        if display:
            estimate, money = self.estimate, self.currency
            out["display"] = {
                "usage": shown_usage(self.usage.to_dict(), money),
                "estimate": None if estimate is None else shown_usage(estimate.to_dict(), money),
            }
        return out


@dataclass(slots=True)
class Adjustment:
    """How a commit's actual usage compared with the reservation on one budget."""

    budget_id: str
    member: str
    estimated: int
    actual: int
    #: the budget's meter (its amounts are in that meter's base unit) and, for a
    #: cost budget kept in another currency than the ledger's, that currency
    meter: str | None = None
    currency: str | None = None

    @property
    def difference(self) -> int:
        """Estimate minus actual: positive is returned to the budget, negative overshoot."""
        return self.estimated - self.actual


@dataclass(slots=True)
class Overshoot:
    """How far one late commit took an enforced budget past its hard limit.

    A commit that arrives after its reservation expired or was released still
    counts (nothing acknowledged is lost), but its room may have been granted
    to other calls meanwhile: ``amount`` is the part of this commit beyond the
    limit, in the budget's base units.
    """

    budget_id: str
    member: str
    meter: str
    amount: int
    #: a cost budget's own currency (None: the ledger's)
    currency: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; ``amount`` is in ``unit``, the meter's base unit."""
        return {"budget_id": self.budget_id, "member": self.member, "meter": self.meter,
                "amount": self.amount, "unit": UNITS.get(self.meter)}  # fmt: skip


@dataclass(slots=True)
class CommitResult:
    """The priced event a commit wrote, and how it compared with the estimate.

    ``late`` marks a commit that arrived after its reservation had expired or
    been released: the usage is still recorded (nothing acknowledged is lost),
    and ``late_overshoot`` says which hard limits it crossed, and by how much.
    """

    event: Event
    adjustments: tuple[Adjustment, ...] = ()
    replayed: bool = False
    late: bool = False
    late_overshoot: tuple[Overshoot, ...] = ()
    #: ids of the auto top-ups this commit started (``allotment.core.topups``)
    topups: tuple[str, ...] = ()

    @property
    def overshoot(self) -> tuple[Adjustment, ...]:
        """Budgets on which the call used more than it had reserved."""
        return tuple(a for a in self.adjustments if a.difference < 0)


def payload_hash(*parts: object) -> str:
    """A stable fingerprint of a request payload, for idempotency checks.

    ``parts`` are strings, integers, None and tuples of those, written as
    JSON (deterministic across processes, unlike ``hash()``) and hashed. A
    string JSON cannot hold (a lone surrogate) falls back to ``repr``.
    """
    try:
        text = orjson.dumps(parts)
    except TypeError:  # orjson.JSONEncodeError
        text = repr(parts).encode()
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def same_payload(stored: str | None, digest: str, parts: tuple[object, ...]) -> bool:
    """Whether ``stored``, a kept fingerprint, is that of the payload ``parts``.

    ``digest`` is ``payload_hash(*parts)``. Fingerprints kept before version
    0.2 hashed ``repr(parts)`` (five times slower to write than JSON); one of
    those still matches, so a retry across an upgrade is still recognised.
    """
    if stored == digest:
        return True
    legacy = hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()
    return stored is not None and bool(parts) and stored == legacy
