"""What several steps share: finding a request's reservation, the budgets that count
a call, counter deltas, and appending to the ledger with its rollup."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from allotment.core import engine
from allotment.core.budgets import Call
from allotment.core.engine import Applied
from allotment.core.ledger import NOTHING_USED, Adjustment, Charge, Event, EventStatus, Reservation
from allotment.core.usage import Usage
from allotment.errors import ValidationError
from allotment.lifecycle.tx import Configured, Delta, Recording, RollupKey

__all__ = [
    "PriceFn",
    "adjustments",
    "append",
    "counted_by",
    "merge_deltas",
    "no_price",
    "pick",
    "released_event",
    "rollup_of",
    "usage_deltas",
    "used_event",
]

#: Prices a call: ``(call, usage, at) -> (usage with cost_micros, price record)``.
PriceFn = Callable[[Call, Usage, datetime], tuple[Usage, dict[str, Any]]]


def no_price(call: Call, usage: Usage, at: datetime) -> tuple[Usage, dict[str, Any]]:
    """A ``PriceFn`` that prices nothing."""
    return usage, {}


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


def counted_by(tx: Configured, call: Call, at: datetime, currency: str | None) -> list[Applied]:
    """The budgets that count ``call`` at ``at``, each with its member and window.

    A step and its lock footprint both ask this, so a batch locks the very
    counters the step then reads and charges.
    """
    return engine.resolve(tx.budgets_for(call.subject.tenant), call, at, currency, tx.rates())


def merge_deltas(deltas: Sequence[Delta]) -> list[Delta]:
    """One delta per counter: a commit usually releases and charges the same ones."""
    merged: dict[tuple[str, str, int], list[int]] = {}
    for budget_key, member, bucket, used, reserved in deltas:
        row = merged.setdefault((budget_key, member, bucket), [0, 0])
        row[0] += used
        row[1] += reserved
    return [(b, m, k, u, r) for (b, m, k), (u, r) in merged.items()]


def usage_deltas(applied: Sequence[Applied], amounts: Sequence[int]) -> list[Delta]:
    """What ``amounts`` (one per applied budget, in order) add to each counter's use."""
    return [(a.budget.key, a.member, a.span.bucket, n, 0)
            for a, n in zip(applied, amounts, strict=True)]  # fmt: skip


def adjustments(
    applied: Sequence[Applied], amounts: Sequence[int], charges: Sequence[Charge]
) -> tuple[Adjustment, ...]:
    """How each budget's amount compares with what its reservation held."""
    estimated = {(c.budget_key, c.member): c.amount for c in charges}
    return tuple(
        Adjustment(
            a.budget.id, a.member, estimated.get((a.budget.key, a.member), 0), n,
            a.budget.meter.value, a.budget.currency,
        )
        for a, n in zip(applied, amounts, strict=True)
    )  # fmt: skip


def append(tx: Recording, event: Event) -> Event:
    """Add ``event`` to the ledger and to its hourly rollup."""
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
    # ROLLUP_TOTALS is the Usage field order, cost last (None: not priced, adds 0);
    # core.usage checks at import that cost_micros is the last field
    return key, (1, *usage[:-1], usage.cost_micros or 0)


class Metered(Protocol):
    """A request that meters what a call used: a commit or a record."""

    @property
    def request_id(self) -> str: ...
    @property
    def status(self) -> EventStatus: ...
    @property
    def usage(self) -> Usage: ...
    @property
    def currency(self) -> str: ...
    @property
    def price(self) -> PriceFn: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def payload_hash(self) -> str: ...


def used_event(request: Metered, call: Call, at: datetime, now: datetime) -> Event:
    """The ledger entry of ``call``, which used ``request.usage``: priced as of ``at``,
    in the window of ``at``, recorded ``now``."""
    usage, price = request.price(call, request.usage, at)
    return Event(
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
    )


def released_event(reservation: Reservation, reason: str, now: datetime) -> Event:
    """The ledger entry of a reservation given back: it used nothing, it held its estimate."""
    return Event(
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
    )
