"""What authorize answers: allowed or not, why, and where every budget stands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

__all__ = ["BudgetView", "Decision", "Reason", "Refusal", "State", "Warning"]


class State(StrEnum):
    """Where a budget stands, from its consumption in percent of its limit."""

    WITHIN_BUDGET = "within_budget"
    APPROACHING_LIMIT = "approaching_limit"
    AT_LIMIT = "at_limit"
    EXCEEDED = "exceeded"


class Reason(StrEnum):
    """Why a budget refused (or, in warn/shadow mode, would have refused)."""

    HARD_CAP_EXCEEDED = "hard_cap_exceeded"
    ESTIMATE_EXCEEDS_REMAINING = "estimate_exceeds_remaining"


@dataclass(frozen=True, slots=True)
class BudgetView:
    """One budget as it stands for one member in the current window.

    ``percent`` and ``state`` count reservations in flight as consumed, so a
    burst of authorizations sees the budget it is about to use.
    """

    budget_id: str
    name: str | None
    meter: str
    member: str
    mode: str
    enabled: bool
    used: int
    reserved: int
    limit: int | None
    remaining: int | None
    percent: Decimal | None
    state: State
    window_start: datetime | None
    resets_at: datetime | None
    currency: str | None = None

    def to_dict(self, *, client: bool = False) -> dict[str, Any]:
        """JSON-safe form; ``client=True`` keeps percentages only (no amounts)."""
        base: dict[str, Any] = {
            "budget_id": self.budget_id,
            "name": self.name,
            "meter": self.meter,
            "percent": None if self.percent is None else str(self.percent),
            "percent_available": None
            if self.percent is None
            else str(max(Decimal(0), Decimal(100) - self.percent)),
            "state": self.state.value,
            "resets_at": _iso(self.resets_at),
        }
        if client:
            return base
        return base | {
            "member": self.member,
            "mode": self.mode,
            "enabled": self.enabled,
            "used": self.used,
            "reserved": self.reserved,
            "limit": self.limit,
            "remaining": self.remaining,
            "window_start": _iso(self.window_start),
            "currency": self.currency,
        }


@dataclass(frozen=True, slots=True)
class Refusal:
    """A budget that refused the call (or would have, for shadow/warn budgets)."""

    budget_id: str
    reason: Reason
    requested: int
    remaining: int
    limit: int
    resets_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "budget_id": self.budget_id,
            "reason": self.reason.value,
            "requested": self.requested,
            "remaining": self.remaining,
            "limit": self.limit,
            "resets_at": _iso(self.resets_at),
        }


@dataclass(frozen=True, slots=True)
class Warning:
    """A soft threshold crossed, or a warn-mode budget over its limit."""

    budget_id: str
    code: str
    percent: Decimal
    threshold: Decimal | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "budget_id": self.budget_id,
            "code": self.code,
            "percent": str(self.percent),
            "threshold": None if self.threshold is None else str(self.threshold),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to an authorization.

    ``refusals`` come from enforced budgets only; ``shadow_refusals`` say what
    shadow budgets would have refused. ``replayed`` marks the answer to a
    retried request id that was already granted.
    """

    request_id: str
    allowed: bool
    budgets: tuple[BudgetView, ...]
    refusals: tuple[Refusal, ...] = ()
    warnings: tuple[Warning, ...] = ()
    shadow_refusals: tuple[Refusal, ...] = ()
    expires_at: datetime | None = None
    replayed: bool = False

    @property
    def reason(self) -> Reason | None:
        """The first refusal's reason, if refused."""
        return self.refusals[0].reason if self.refusals else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "request_id": self.request_id,
            "allowed": self.allowed,
            "reason": None if self.reason is None else self.reason.value,
            "refusals": [r.to_dict() for r in self.refusals],
            "warnings": [w.to_dict() for w in self.warnings],
            "shadow_refusals": [r.to_dict() for r in self.shadow_refusals],
            "budgets": [b.to_dict() for b in self.budgets],
            "expires_at": _iso(self.expires_at),
            "replayed": self.replayed,
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
