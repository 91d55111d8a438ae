"""Credit pools: prepaid grants behind a budget, burned down in one fixed order.

A budget with ``credits: true`` is a **credit pool** (system 3's extra credit,
system 4's purchased credits): a call draws the budget's allowance for its
window first, then the pool's grants for the same member, then nothing. Its
id is the pool's id.

A **grant** is never edited: it is voided, or another grant is added. Its
consumption is a counter like a budget's (``grant_key``), so reserving on a
grant is the same atomic step as reserving on a budget. What no grant covers
at commit becomes **debt** (the counter ``debt_key``), repaid first by the
next grant.

Every movement is a **credit entry** with the pool member's balance after it;
the balances are derived state, rebuilt from those entries.

Burn order, fixed: priority (lower first) → soonest expiry (none last) →
promotional before paid → effective_at → id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any

from allotment.core.money import decimal_to_units, units_to_decimal
from allotment.core.windows import Window
from allotment.errors import ValidationError

__all__ = [
    "GRANT_SEPARATOR",
    "CreditEntry",
    "EntryKind",
    "Grant",
    "GrantKind",
    "RecurringGrant",
    "burn_order",
    "counter_keys",
    "debt_key",
    "grant_key",
    "split_key",
]

#: between a pool's key and a grant id in a grant's counter key: never in a budget id or
#: a grant id, so the last one splits a grant key, and no budget key ends in ``!<id>``
GRANT_SEPARATOR = _SEP = "!"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")
_MAX_METADATA = 32


class GrantKind(StrEnum):
    """Where a grant came from."""

    PURCHASE = "purchase"
    PROMOTIONAL = "promotional"
    TOP_UP = "top_up"
    ADJUSTMENT = "adjustment"


class EntryKind(StrEnum):
    """A movement of credit.

    ``debit`` holds or draws on a grant (authorize, or a commit drawing
    further); ``refund`` gives back (a commit that used less, a release);
    ``expiry`` and ``void`` close a grant's balance; ``debt`` is what no grant
    covered; ``repayment`` is a grant paying debt off.
    """

    GRANT = "grant"
    DEBIT = "debit"
    REFUND = "refund"
    EXPIRY = "expiry"
    VOID = "void"
    DEBT = "debt"
    REPAYMENT = "repayment"
    #: auto top-up steps (``allotment.core.topups``): no balance moves with them
    TOPUP_STARTED = "topup_started"
    TOPUP_DECLINED = "topup_declined"
    TOPUP_FAILED = "topup_failed"
    TOPUP_RESUMED = "topup_resumed"


def grant_key(pool: str, grant_id: str) -> str:
    """The counter of a grant's consumption (``used``: drawn, ``reserved``: held)."""
    return f"{pool}{_SEP}{grant_id}"


def debt_key(pool: str) -> str:
    """The counter of a pool's debt (``used``), per member."""
    return f"{pool}{_SEP}"


def counter_keys(pool: str, member: str, grants: Iterable[Grant]) -> list[tuple[str, str, int]]:
    """The counters of ``member``'s ``grants`` in ``pool``, then its debt's: what a
    store reads for ``held_grants``."""
    return [*((g.key, member, 0) for g in grants), (debt_key(pool), member, 0)]


def split_key(key: str) -> tuple[str, str] | None:
    """``(pool, grant id)`` of a grant's counter key (grant id ``""``: the debt), else None."""
    pool, sep, grant_id = key.rpartition(_SEP)
    if not sep or "#" in grant_id:
        return None
    return pool, grant_id


@dataclass(frozen=True, slots=True)
class Grant:
    """A prepaid amount in a pool, for one member (``""``: the pool is not ``per``).

    ``amount`` is in base units of the pool budget's meter. It counts at ``t``
    only if ``effective_at <= t < expires_at`` and it was not voided by then.
    ``closed`` says its expiry (or void) entry is written: its balance is gone.
    """

    pool: str
    member: str
    id: str
    amount: int
    kind: GrantKind
    effective_at: datetime
    created_at: datetime
    expires_at: datetime | None = None
    priority: int = 0
    idempotency_key: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    voided_at: datetime | None = None
    closed: bool = False
    #: the grant's counter (``grant_key``)
    key: str = field(init=False, repr=False, compare=False)
    #: where the grant stands in the burn order (``burn_order``)
    rank: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ValidationError("id", "must be 1-128 letters, digits or _.:@/- characters")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ValidationError("amount", "must be positive")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValidationError("priority", "must be an integer")
        for name in ("effective_at", "created_at", "expires_at", "voided_at"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise ValidationError(name, "must be a timezone-aware time")
        if self.expires_at is not None and self.expires_at <= self.effective_at:
            raise ValidationError("expires_at", "must be after effective_at")
        _check_metadata(self.metadata)
        # Worked out once: every call on a pool reads and orders all its grants.
        object.__setattr__(self, "key", grant_key(self.pool, self.id))
        object.__setattr__(self, "rank", _burn_rank(self))

    def live(self, at: datetime) -> bool:
        """Whether the grant counts at ``at``."""
        if self.closed or self.effective_at > at:
            return False
        if self.voided_at is not None and self.voided_at <= at:
            return False
        return self.expires_at is None or at < self.expires_at

    def ended(self, at: datetime) -> bool:
        """Whether the grant has expired or been voided by ``at`` (it never counts again)."""
        if self.voided_at is not None and self.voided_at <= at:
            return True
        return self.expires_at is not None and self.expires_at <= at

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "member": self.member,
            "amount": self.amount,
            "kind": self.kind.value,
            "priority": self.priority,
            "effective_at": self.effective_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "idempotency_key": self.idempotency_key,
            "metadata": dict(self.metadata),
            "created_at": self.created_at.isoformat(),
            "voided_at": None if self.voided_at is None else self.voided_at.isoformat(),
        }


_RANK = attrgetter("rank")


def _burn_rank(grant: Grant) -> tuple[Any, ...]:
    expires = grant.expires_at
    return (
        grant.priority,
        expires is None,
        expires.timestamp() if expires is not None else 0.0,
        grant.kind is not GrantKind.PROMOTIONAL,
        grant.effective_at.timestamp(),
        grant.id,
    )


def burn_order(grants: Iterable[Grant]) -> list[Grant]:
    """``grants`` in the order calls draw on them (see the module docstring)."""
    return sorted(grants, key=_RANK)


@dataclass(frozen=True, slots=True)
class RecurringGrant:
    """A grant a pool gives each member every period (a plan's monthly credits):
    ``amount`` base units, effective from the period's start and, with ``expires``,
    gone at its end. Given lazily, by the first call that opens the member's pool
    in the period; its id names the period, so it is given once."""

    amount: int
    every: Window
    kind: GrantKind = GrantKind.PROMOTIONAL
    priority: int = 0
    expires: bool = True

    def grant(self, index: int, pool: str, member: str, at: datetime) -> Grant:
        """The grant of the period that holds ``at`` (``index``: its place in the pool's list)."""
        span = self.every.span(at)
        assert span is not None and span.start is not None
        grant_id = f"r{index}-{span.bucket}"
        return Grant(
            pool, member, grant_id, self.amount, self.kind, span.start, at,
            expires_at=span.end if self.expires else None, priority=self.priority,
            idempotency_key=f"recurring:{grant_id}",
        )  # fmt: skip

    @classmethod
    def from_spec(cls, spec: object, scale: int, path: str) -> RecurringGrant:
        if not isinstance(spec, Mapping):
            raise ValidationError(path, "must be an object")
        unknown = set(spec) - {"amount", "every", "kind", "priority", "expires"}
        if unknown:
            raise ValidationError(f"{path}.{sorted(unknown)[0]}", "is not a recurring grant field")
        every = Window.parse(spec.get("every", "month"))
        if every.kind.value not in ("day", "week", "month", "year"):
            raise ValidationError(f"{path}.every", "a calendar period: day, week, month or year")
        amount = decimal_to_units(spec.get("amount"), scale, f"{path}.amount")
        if amount <= 0:
            raise ValidationError(f"{path}.amount", "must be positive")
        try:
            kind = GrantKind(spec.get("kind", "promotional"))
        except ValueError:
            raise ValidationError(
                f"{path}.kind", "purchase, promotional, top_up or adjustment"
            ) from None
        priority = spec.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValidationError(f"{path}.priority", "must be an integer")
        expires = spec.get("expires", True)
        if not isinstance(expires, bool):
            raise ValidationError(f"{path}.expires", "must be true or false")
        return cls(amount, every, kind, priority, expires)

    def to_spec(self, scale: int) -> dict[str, Any]:
        return {
            "amount": str(units_to_decimal(self.amount, scale)),
            "every": self.every.to_spec(),
            "kind": self.kind.value,
            "priority": self.priority,
            "expires": self.expires,
        }


@dataclass(frozen=True, slots=True)
class CreditEntry:
    """One movement of credit in a pool member's credit ledger.

    ``amount`` is positive; ``kind`` says which way it moved. ``balance`` is
    the member's available credit after it (live grants' balances less debt).
    """

    pool: str
    member: str
    kind: EntryKind
    amount: int
    balance: int
    at: datetime
    grant_id: str | None = None
    request_id: str | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "member": self.member,
            "kind": self.kind.value,
            "amount": self.amount,
            "balance": self.balance,
            "at": self.at.isoformat(),
            "grant_id": self.grant_id,
            "request_id": self.request_id,
        }


def _check_metadata(metadata: Mapping[str, str]) -> None:
    if not isinstance(metadata, Mapping):
        raise ValidationError("metadata", "must be an object of strings")
    if len(metadata) > _MAX_METADATA:
        raise ValidationError("metadata", f"at most {_MAX_METADATA} entries")
    for name, value in metadata.items():
        if not isinstance(name, str) or not isinstance(value, str) or len(value) > 1024:
            raise ValidationError(f"metadata.{name}", "must be a string of at most 1024 characters")
