"""Auto top-up: buying credit for a pool member when its balance runs low.

A credit pool (a budget with ``credits: true``) may carry ``auto_topup``:
when a commit leaves a member's credit balance below ``threshold``, one
top-up of ``amount`` (or up to the ``target`` balance) is started, unless one
is already under way, auto top-up is paused after a failed payment, or the
month's auto top-up spend would pass ``monthly_cap``. The cap is a hard
budget on its own counter (``topup_key``), reserved when the top-up starts:
concurrent commits can never together start more than it allows.

The payment itself runs outside any transaction, through a gateway
(``allotment.payments``); its outcome moves the top-up on:

- ``succeeded``: a ``top_up`` grant is added (idempotent per top-up id);
- ``declined``: tried again after a back-off, at most ``MAX_ATTEMPTS`` times;
- ``failed`` (or declined too often): auto top-up pauses for the member
  until it is re-enabled, reported as ``auto_topup_failed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from allotment.core.money import decimal_to_units, units_to_decimal
from allotment.errors import ValidationError

__all__ = [
    "BACKOFF",
    "MAX_ATTEMPTS",
    "AutoTopUp",
    "TopUp",
    "TopUpState",
    "TopUpStatus",
    "topup_key",
]

#: waits after the 1st, 2nd, ... decline before the next attempt
BACKOFF = (timedelta(minutes=1), timedelta(minutes=10), timedelta(hours=1))
#: a top-up declined this many times fails (and pauses auto top-up)
MAX_ATTEMPTS = len(BACKOFF) + 1


def topup_key(pool: str) -> str:
    """The counter of a pool member's auto top-up spend per calendar month (UTC):
    ``used`` bought, ``reserved`` under way. ``$`` is in no budget or grant id."""
    return f"{pool}$topup"


class TopUpStatus(StrEnum):
    """Why auto top-up is not buying more credit, as decisions and status report it."""

    FAILED = "auto_topup_failed"
    MONTHLY_LIMIT_REACHED = "auto_topup_monthly_limit_reached"


#: what an end user can be shown for each status
USER_MESSAGES = {
    TopUpStatus.FAILED: "Your automatic top-up payment failed. Update your payment method "
    "to keep using extra credit.",
    TopUpStatus.MONTHLY_LIMIT_REACHED: "You have reached this month's automatic top-up "
    "limit. Extra credit will be available again next month, or raise the limit.",
}


@dataclass(frozen=True, slots=True)
class AutoTopUp:
    """A pool's auto top-up, in base units of its meter."""

    threshold: int
    amount: int | None = None
    target: int | None = None
    monthly_cap: int | None = None

    def __post_init__(self) -> None:
        if (self.amount is None) == (self.target is None):
            raise ValidationError("auto_topup", "give exactly one of amount and target")
        if self.amount is not None and self.amount <= 0:
            raise ValidationError("auto_topup.amount", "must be positive")
        if self.target is not None and self.target <= self.threshold:
            raise ValidationError("auto_topup.target", "must be above threshold")

    def to_buy(self, balance: int) -> int:
        """How much one top-up buys at ``balance``."""
        if self.amount is not None:
            return self.amount
        assert self.target is not None
        return self.target - balance

    @classmethod
    def from_spec(cls, spec: object, scale: int) -> AutoTopUp:
        if not isinstance(spec, Mapping):
            raise ValidationError("auto_topup", "must be an object")
        unknown = set(spec) - {"threshold", "amount", "target", "monthly_cap"}
        if unknown:
            raise ValidationError(f"auto_topup.{sorted(unknown)[0]}", "is not an auto_topup field")
        if "threshold" not in spec:
            raise ValidationError("auto_topup.threshold", "is required")

        def units(name: str) -> int | None:
            value = spec.get(name)
            return None if value is None else decimal_to_units(value, scale, f"auto_topup.{name}")

        threshold = units("threshold")
        assert threshold is not None
        return cls(threshold, units("amount"), units("target"), units("monthly_cap"))

    def to_spec(self, scale: int) -> dict[str, Any]:
        def human(value: int | None) -> str | None:
            return None if value is None else str(units_to_decimal(value, scale))

        return {
            "threshold": human(self.threshold),
            "amount": human(self.amount),
            "target": human(self.target),
            "monthly_cap": human(self.monthly_cap),
        }


class TopUpState(StrEnum):
    """Where a top-up is."""

    PENDING = "pending"  # to be paid (again, after a decline: at next_attempt_at)
    SUCCEEDED = "succeeded"  # paid: its grant is added
    FAILED = "failed"  # not paid: auto top-up is paused for the member
    RESUMED = "resumed"  # failed, then auto top-up was re-enabled


@dataclass(frozen=True, slots=True)
class TopUp:
    """One auto top-up of a pool member: ``amount`` base units, paid through the gateway.

    ``bucket`` is the month (its counter bucket) whose cap it counts toward.
    ``claimed_until``: a worker is paying it; others leave it alone until then.
    """

    id: str
    pool: str
    member: str
    amount: int
    bucket: int
    state: TopUpState
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    claimed_until: datetime | None = None
    error: str | None = None
    grant_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": self.id,
            "member": self.member,
            "amount": self.amount,
            "state": self.state.value,
            "attempts": self.attempts,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "next_attempt_at": iso(self.next_attempt_at),
            "error": self.error,
            "grant_id": self.grant_id,
        }
