"""What authorize answers: allowed or not, why, and where every budget stands.

These are output records: plain slotted dataclasses, cheap to build on the
hot path. Treat them as values; nothing in allotment mutates one after
handing it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from allotment.core.routes import Route
from allotment.core.topups import USER_MESSAGES, TopUpStatus
from allotment.core.units import UNITS, shown

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
    #: a credit pool's allowance and grants together cannot cover the call
    CREDITS_EXHAUSTED = "credits_exhausted"
    #: a rolling window (rate limit) is full until enough usage leaves it (429)
    RATE_LIMITED = "rate_limited"
    #: every slot of a concurrency budget is held by a lease (429)
    CONCURRENCY_LIMITED = "concurrency_limited"
    #: the call is larger than a rate or concurrency limit itself: retrying never helps
    ESTIMATE_EXCEEDS_LIMIT = "estimate_exceeds_limit"
    #: the store is down and the budget fails closed (a route candidate passed over)
    STORE_UNAVAILABLE = "store_unavailable"

    @property
    def retryable(self) -> bool:
        """Whether the refusal passes by itself soon: a rate or concurrency limit (429)."""
        return self in _RETRYABLE


_RETRYABLE = frozenset({Reason.RATE_LIMITED, Reason.CONCURRENCY_LIMITED})


class Uncovered(StrEnum):
    """What authorize does with a call that no budget applies to (a deployment setting).

    ``warn`` (the default) allows it with a ``no_budget`` warning, so a typo in
    a tenant name is not silently unlimited; ``deny`` refuses it.
    """

    ALLOW = "allow"
    WARN = "warn"
    DENY = "deny"


@dataclass(slots=True)
class CreditView:
    """A credit pool member's standing: what its live grants have left, its debt, and
    which grants a call drew on (grant id, amount), in base units of the pool's meter."""

    available: int
    debt: int
    drawn: tuple[tuple[str, int], ...] = ()
    #: why auto top-up is not keeping the pool topped up (``TopUpStatus``), if it is not
    topup: TopUpStatus | None = None

    def topup_dict(self) -> dict[str, str] | None:
        """The auto top-up status with the message an end user can be shown."""
        if self.topup is None:
            return None
        return {"status": self.topup.value, "message": USER_MESSAGES[self.topup]}

    def to_dict(self, unit: str, money: str | None, display: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "available": self.available,
            "debt": self.debt,
            "drawn": [{"grant_id": g, "amount": n} for g, n in self.drawn],
            "auto_topup": self.topup_dict(),
        }
        if display:
            out["display"] = {
                "available": shown(self.available, unit, money),
                "debt": shown(self.debt, unit, money),
            }
        return out


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
    #: a credit pool's grants and debt (None: not a pool, or not read)
    credit: CreditView | None = None

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

    def to_dict(
        self, *, client: bool = False, currency: str | None = None, display: bool = True
    ) -> dict[str, Any]:
        """JSON-safe form; ``client=True`` keeps percentages only (no amounts).

        Amounts are integers in the base ``unit`` of the meter (see
        ``allotment.core.units``); a cost budget names its ``currency``: its own,
        else ``currency``, the ledger's. ``display`` adds the amounts as exact
        decimal strings in human units, for people. Written out rather than
        through the properties: it runs for every budget of every authorization
        the service answers (which leaves ``display`` out).
        """
        budget, span = self.budget, self.span
        consumed = self.used + self.reserved
        limit = budget.limit
        percent, available = _percents(budget, consumed)
        base: dict[str, Any] = {
            "budget_id": budget.id,
            "name": budget.name,
            "meter": budget.meter.value,
            "percent": percent,
            "percent_available": available,
            "state": budget.state(consumed).value,
            "resets_at": _iso(span.resets_at),
        }
        credit = self.credit
        if budget.credits:
            # Extra credit is in use once the window's allowance is gone.
            active = limit is not None and consumed >= limit and credit is not None
            base["extra_credit"] = {
                "active": active and bool(credit and credit.available),
                "auto_topup": None if credit is None else credit.topup_dict(),
            }
            base["warning"] = budget.state(consumed) is not State.WITHIN_BUDGET
        if client:
            return base
        unit = UNITS[budget.meter]
        money = None if unit != "micros" else budget.currency or currency
        remaining = None if limit is None else max(0, limit - consumed)
        overshoot = 0 if limit is None else max(0, self.used - limit)
        base["member"] = self.member
        base["mode"] = budget.mode.value
        base["enabled"] = budget.enabled
        base["used"] = self.used
        base["reserved"] = self.reserved
        base["limit"] = limit
        base["remaining"] = remaining
        base["overshoot"] = overshoot
        base["unit"] = unit
        base["currency"] = money
        base["window_start"] = _iso(span.start)
        if display:
            base["display"] = {
                "used": shown(self.used, unit, money),
                "reserved": shown(self.reserved, unit, money),
                "limit": None if limit is None else shown(limit, unit, money),
                "remaining": None if remaining is None else shown(remaining, unit, money),
                "overshoot": shown(overshoot, unit, money),
            }
        if credit is not None:
            base["credit"] = credit.to_dict(unit, money, display)
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
    #: for a rate or concurrency limit: the soonest the call can fit (None: not known)
    retry_at: datetime | None = None

    def to_dict(
        self, *, unit: str | None = None, currency: str | None = None, display: bool = False
    ) -> dict[str, Any]:
        """JSON-safe form. ``unit`` and ``currency`` are the refusing budget's (a refusal
        knows only its budget's id: ``Decision.to_dict`` fills them in); ``display``
        adds the amounts in human units."""
        out: dict[str, Any] = {
            "budget_id": self.budget_id,
            "reason": self.reason.value,
            "requested": self.requested,
            "remaining": self.remaining,
            "limit": self.limit,
            "unit": unit,
            "currency": currency,
            "resets_at": _iso(self.resets_at),
            "retry_at": _iso(self.retry_at),
        }
        if display:
            out["display"] = None if unit is None else {
                "requested": shown(self.requested, unit, currency),
                "remaining": shown(self.remaining, unit, currency),
                "limit": shown(self.limit, unit, currency),
            }  # fmt: skip
        return out


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
            "percent": _two_places(self.percent),
            "threshold": _two_places(self.threshold),
        }


@dataclass(slots=True)
class Skipped:
    """A route candidate that could not take the call, and why (its budgets' refusals)."""

    route: Route
    refusals: tuple[Refusal, ...]
    #: the candidate's budgets as they stood (their units name the refusals' amounts)
    budgets: tuple[BudgetView, ...] = ()

    @property
    def retry_at(self) -> datetime | None:
        """When the candidate can take the call, if only limits that pass by themselves
        refused it (the latest of their retry times), else None."""
        return _retry_at(self.refusals)

    def to_dict(self, *, currency: str | None = None, display: bool = True) -> dict[str, Any]:
        first = self.refusals[0] if self.refusals else None
        return {
            **self.route.to_dict(),
            "reason": None if first is None else first.reason.value,
            "budget_id": None if first is None else first.budget_id,
            "retry_at": _iso(self.retry_at),
            "refusals": _refusals(self.refusals, self.budgets, currency, display),
        }


def _retry_at(refusals: Sequence[Refusal]) -> datetime | None:
    if not refusals or not all(r.reason.retryable and r.retry_at for r in refusals):
        return None
    return max(r.retry_at for r in refusals if r.retry_at is not None)


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
    #: with route candidates: the one reserved (None: refused, or no candidates given)
    route: Route | None = None
    #: with route candidates: those that could not take the call, in order (every one
    #: when refused); ``refusals`` are then the first candidate's
    skipped: tuple[Skipped, ...] = ()

    @property
    def reason(self) -> Reason | None:
        """The first refusal's reason, if refused."""
        return self.refusals[0].reason if self.refusals else None

    @property
    def binding(self) -> BudgetView | None:
        """The budget that binds the call: the one that refused it (of limits that pass
        by themselves, the one the call waits on), else the most used enforced budget
        with a limit (the first of equals); None when no such budget applies."""
        if self.refusals:
            refusal, views = self.refusal
            for view in views:
                if view.budget.id == refusal.budget_id:
                    return view
            return None
        limited = [v for v in self.budgets if v.budget.limit is not None and v.mode == "enforce"]
        return max(limited, key=lambda v: v.percent or 0) if limited else None

    @property
    def refusal(self) -> tuple[Refusal, tuple[BudgetView, ...]]:
        """The refusal that speaks for a refused call, with the budgets it is among:
        the first; for a call worth retrying, the one it waits on (of the route
        candidate that frees up soonest, the limit that frees up last)."""
        if not self.limited:
            return self.refusals[0], self.budgets
        tried = [(s.refusals, s.budgets) for s in self.skipped] or [(self.refusals, self.budgets)]
        waits = [(rs, vs) for rs, vs in tried if rs and all(r.reason.retryable for r in rs)]
        retry_at = self.retry_at
        refusals, views = next(
            ((rs, vs) for rs, vs in waits if _retry_at(rs) == retry_at), waits[0]
        )
        return max(refusals, key=lambda r: r.retry_at or _NEVER), views

    def refusal_dict(self, *, currency: str | None = None) -> dict[str, Any]:
        """``refusal`` in JSON form, with its budget's unit and amounts for people."""
        refusal, views = self.refusal
        return _refusals((refusal,), views, currency, True)[0]

    @property
    def limited(self) -> bool:
        """Refused, but only by limits that pass by themselves (rate, concurrency), on
        the one route or on some route candidate: worth retrying (HTTP 429)."""
        if self.allowed:
            return False
        tried = [s.refusals for s in self.skipped] or [self.refusals]
        return any(rs and all(r.reason.retryable for r in rs) for rs in tried)

    @property
    def retry_at(self) -> datetime | None:
        """When to try again, for a call refused by rate or concurrency limits only: the
        latest of their retry times (with route candidates, the soonest any candidate
        can take it); None when waiting cannot help."""
        if self.allowed:
            return None
        if not self.skipped:
            return _retry_at(self.refusals)
        times = [t for t in (s.retry_at for s in self.skipped) if t is not None]
        return min(times) if times else None

    def to_dict(self, *, currency: str | None = None, display: bool = True) -> dict[str, Any]:
        """JSON-safe form: see ``BudgetView.to_dict`` for ``currency`` (the ledger's) and
        ``display``. The service's granted authorizations leave ``display`` out."""
        views = self.budgets
        refusals, shadow = self.refusals, self.shadow_refusals
        return {
            "request_id": self.request_id,
            "allowed": self.allowed,
            "reason": None if self.reason is None else self.reason.value,
            "refusals": _refusals(refusals, views, currency, display) if refusals else [],
            "warnings": [w.to_dict() for w in self.warnings],
            "shadow_refusals": _refusals(shadow, views, currency, display) if shadow else [],
            "budgets": [b.to_dict(currency=currency, display=display) for b in views],
            "expires_at": _iso(self.expires_at),
            "retry_at": _iso(self.retry_at) if refusals else None,
            "replayed": self.replayed,
            "degraded": self.degraded,
            "commit_with": self.commit_with,
            "route": None if self.route is None else self.route.to_dict(),
            "skipped": [s.to_dict(currency=currency, display=display) for s in self.skipped],
        }


def _refusals(
    refusals: tuple[Refusal, ...],
    views: tuple[BudgetView, ...],
    currency: str | None,
    display: bool,
) -> list[dict[str, Any]]:
    """Refusals in JSON form, each with the unit and currency of the budget that refused."""
    budgets = {v.budget.id: v.budget for v in views}
    out = []
    for refusal in refusals:
        budget = budgets.get(refusal.budget_id or "")
        unit = None if budget is None else UNITS[budget.meter]
        money = None if unit != "micros" or budget is None else budget.currency or currency
        out.append(refusal.to_dict(unit=unit, currency=money, display=display))
    return out


def _percents(budget: Budget, consumed: int) -> tuple[str | None, str | None]:
    """``percent`` and ``percent_available``, each written with exactly two decimals."""
    percent = budget.percent(consumed)
    if percent is None:
        return None, None
    if percent < _HUNDRED:  # a multiple of 0.01 with two decimals: str() writes both
        return str(percent), str(_HUNDRED - percent)
    return f"{percent:.2f}", "0.00"  # 100 (a zero limit) or past it


def _two_places(value: Decimal | None) -> str | None:
    """A percentage (a multiple of 0.01) written with exactly two decimals."""
    return None if value is None else f"{value:.2f}"


_HUNDRED = Decimal(100)
_NEVER = datetime.min.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
