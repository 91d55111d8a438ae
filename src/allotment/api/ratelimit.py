"""The IETF ``RateLimit-Policy`` and ``RateLimit`` headers of an authorize answer, and
``Retry-After`` for a 429.

Written as in draft-ietf-httpapi-ratelimit-headers: the policy names the
binding budget with its quota ``q`` (in the budget's base unit, ``qu`` for
anything but requests) and window ``w`` in seconds, when it has a length;
``RateLimit`` says what is left (``r``) and in how many seconds more frees
up (``t``): the moment a refused call can fit, else when the window next
frees up. The binding budget is the one ``Decision.binding`` names.
"""

from __future__ import annotations

import math
from datetime import datetime

from allotment.core.decisions import BudgetView, Decision
from allotment.core.units import UNITS
from allotment.core.usage import Meter
from allotment.core.windows import WindowKind

__all__ = ["headers", "seconds_until"]

_QUOTA_UNITS = {"requests": None, "leases": "concurrent-requests"}


def seconds_until(at: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` until ``at``, rounded up (never negative)."""
    return max(0, math.ceil((at - now).total_seconds()))


def headers(decision: Decision, now: datetime) -> dict[str, str]:
    """The rate-limit headers of ``decision`` (none when no enforced budget has a limit),
    with ``Retry-After`` when it was refused by limits that pass by themselves."""
    view = decision.binding
    if view is None:
        return {}
    name = f'"{view.budget_id}"'  # budget ids hold no quote nor backslash
    out = {
        "RateLimit-Policy": name + _policy(view),
        "RateLimit": f"{name};r={view.remaining or 0}",
    }
    retry_at = decision.retry_at
    frees_at = retry_at if retry_at is not None else view.resets_at
    if frees_at is not None:
        out["RateLimit"] += f";t={seconds_until(frees_at, now)}"
    if retry_at is not None:
        out["Retry-After"] = str(seconds_until(retry_at, now))
    return out


def _policy(view: BudgetView) -> str:
    budget = view.budget
    policy = f";q={budget.limit}"
    unit = UNITS[budget.meter]
    quota_unit = _QUOTA_UNITS.get(unit, unit)
    if quota_unit is not None:
        policy += f';qu="{quota_unit}"'
    window = budget.window
    if window.kind is WindowKind.ROLLING:
        policy += f";w={window.seconds}"
    elif budget.meter is not Meter.CONCURRENCY and view.span.start and view.span.end:
        policy += f";w={int((view.span.end - view.span.start).total_seconds())}"
    return policy
