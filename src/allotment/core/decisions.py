"""What authorize answers: allowed or not, why, and where every budget stands.

These are output records: plain slotted dataclasses, cheap to build on the
hot path. Treat them as values; nothing in allotment mutates one after
handing it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from allotment.core.budgets import Budget
    from allotment.core.windows import Span

__all__ = ["BudgetView", "Decision", "Reason", "Refusal", "State", "Uncovered", "Warning"]


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
    UNKNOWN_MODEL = "unknown_model"
    NO_BUDGET = "no_budget"


class Uncovered(StrEnum):
    """What authorize does with a call that no budget applies to (a deployment setting).

    ``warn`` (the default) allows it with a ``no_budget`` warning, so a typo in
    a tenant name is not silently unlimited; ``deny`` refuses it.
    """

    ALLOW = "allow"
    WARN = "warn"
    DENY = "deny"


@dataclass(slots=True)
class BudgetView:
    """One budget as it stands for one member in the current window.

    Holds the raw counters; the derived figures are computed when read, so
    an authorization that nobody inspects in detail pays nothing for them.
    ``percent`` and ``state`` count reservations in flight as consumed, so a
    burst of authorizations sees the budget it is about to use.
    """

    budget: Budget
    member: str
    span: Span
    used: int
    reserved: int

    @property
    def budget_id(self) -> str:
        """The budget's id."""
        return self.budget.id

    @property
    def name(self) -> str | None:
        """The budget's display name."""
        return self.budget.name

    @property
    def meter(self) -> str:
        """What the budget counts."""
        return self.budget.meter.value

    @property
    def mode(self) -> str:
        """enforce, warn, shadow or off."""
        return self.budget.mode.value

    @property
    def enabled(self) -> bool:
        """Whether the budget can refuse or warn at all."""
        return self.budget.enabled

    @property
    def limit(self) -> int | None:
        """The hard limit in base units, or None for metering only."""
        return self.budget.limit

    @property
    def currency(self) -> str | None:
        """Currency of a cost budget."""
        return self.budget.currency

    @property
    def remaining(self) -> int | None:
        """Room left under the limit (never negative), or None without a limit."""
        limit = self.budget.limit
        return None if limit is None else max(0, limit - self.used - self.reserved)

    @property
    def overshoot(self) -> int:
        """How far use is past the limit (0 within it, or without a limit).

        Admission keeps used + reserved within an enforced limit; use passes it
        only when a call uses more than its estimate, or commits late.
        """
        limit = self.budget.limit
        return 0 if limit is None else max(0, self.used - limit)

    @property
    def percent(self) -> Decimal | None:
        """Consumption (used + reserved) in percent of the limit, rounded down to 0.01."""
        return self.budget.percent(self.used + self.reserved)

    @property
    def state(self) -> State:
        """within_budget, approaching_limit, at_limit or exceeded."""
        return self.budget.state(self.used + self.reserved)

    @property
    def window_start(self) -> datetime | None:
        """Start of the current window (None for lifetime)."""
        return self.span.start

    @property
    def resets_at(self) -> datetime | None:
        """When the window rolls over (None for lifetime)."""
        return self.span.resets_at

    def to_dict(self, *, client: bool = False) -> dict[str, Any]:
        """JSON-safe form; ``client=True`` keeps percentages only (no amounts).

        Written out rather than through the properties: it runs for every
        budget of every authorization the service answers.
        """
        budget, span = self.budget, self.span
        consumed = self.used + self.reserved
        percent = budget.percent(consumed)
        base: dict[str, Any] = {
            "budget_id": budget.id,
            "name": budget.name,
            "meter": budget.meter.value,
            "percent": None if percent is None else str(percent),
            "percent_available": None if percent is None else str(max(_ZERO, _HUNDRED - percent)),
            "state": budget.state(consumed).value,
            "resets_at": _iso(span.resets_at),
        }
        if client:
            return base
        limit = budget.limit
        base["member"] = self.member
        base["mode"] = budget.mode.value
        base["enabled"] = budget.enabled
        base["used"] = self.used
        base["reserved"] = self.reserved
        base["limit"] = limit
        base["remaining"] = None if limit is None else max(0, limit - consumed)
        base["overshoot"] = 0 if limit is None else max(0, self.used - limit)
        base["window_start"] = _iso(span.start)
        base["currency"] = budget.currency
        return base


@dataclass(slots=True)
class Refusal:
    """Why a call was refused: a budget (or, for shadow/warn budgets, would have been).

    ``budget_id`` is None for a refusal no budget made (``unknown_model``).
    """

    budget_id: str | None
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


@dataclass(slots=True)
class Warning:
    """A soft threshold crossed, or a warn-mode budget over its limit.

    Warnings no budget raised have no ``budget_id`` nor ``percent``:
    ``no_budget`` (no budget applies to the call) and ``unknown_model`` (the
    model has no price; it was priced at the conservative fallback).
    """

    budget_id: str | None
    code: str
    percent: Decimal | None
    threshold: Decimal | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "budget_id": self.budget_id,
            "code": self.code,
            "percent": None if self.percent is None else str(self.percent),
            "threshold": None if self.threshold is None else str(self.threshold),
        }


@dataclass(slots=True)
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
    #: allowed without the store, which was unreachable, by fail-open budgets
    degraded: bool = False
    #: for a degraded grant: what its commit must send along (``subject``,
    #: ``provider``, ``model``) to be metered by a process that never saw it
    commit_with: dict[str, Any] | None = None

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
            "degraded": self.degraded,
            "commit_with": self.commit_with,
        }


_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
