"""allotment's errors: one small hierarchy, carrying data, free of HTTP.

::

    AllotmentError
    ├── ValidationError        bad input; names the offending field
    │   └── InvalidData        a value the database refused (not an outage)
    ├── ConfigurationError     bad settings (unknown store scheme, bad config file)
    ├── NotFoundError          an unknown budget or request id
    ├── ConflictError          a request id reused with a different payload, a taken id
    ├── BudgetExceeded         raised by ``Governor.hold`` when authorize refuses
    ├── AccessDenied           a key's role or tenant may not do this (``allotment.access``)
    └── StoreError             the backend failed; the cause is chained with ``from``

The API layer maps these to status codes; nothing here knows about HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from allotment.core.decisions import Decision

__all__ = [
    "AccessDenied",
    "AllotmentError",
    "BudgetExceeded",
    "ConfigurationError",
    "ConflictError",
    "InvalidData",
    "NotFoundError",
    "StoreError",
    "ValidationError",
]


class AllotmentError(Exception):
    """Base class of every error allotment raises on purpose."""


class ValidationError(AllotmentError, ValueError):
    """Input was rejected before anything was written.

    Attributes:
        field: dotted path of the offending field, e.g. ``usage.input_tokens``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def within(self, prefix: str) -> ValidationError:
        """Return the same error with ``prefix.`` put in front of its field."""
        return ValidationError(f"{prefix}.{self.field}", self.message)


class InvalidData(ValidationError):
    """The database refused a value that got past validation: a NUL byte
    PostgreSQL cannot keep in text, a number beyond its range, a broken constraint.

    Nothing was written. It is bad input, not an outage, so never a
    ``StoreError``: the same call fails the same way every time, and a
    ``fail_open`` budget must not let it through as a degraded allow.
    ``field`` is the column when the database names it, else ``request``.
    """


class ConfigurationError(AllotmentError):
    """Settings that cannot work, such as an unknown store URL scheme."""


class NotFoundError(AllotmentError, LookupError):
    """An unknown budget id or request id."""


class ConflictError(AllotmentError):
    """A request id was reused with a different payload, or a budget id is taken.

    Attributes:
        key: the request id or budget id in conflict.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key!r}: {message}")
        self.key = key


class BudgetExceeded(AllotmentError):
    """An authorization was refused; ``decision`` says which budget and why."""

    def __init__(self, decision: Decision) -> None:
        refusal = decision.refusals[0]
        who = (
            "the call was refused"
            if refusal.budget_id is None
            else (f"budget {refusal.budget_id!r} refused the call")
        )
        super().__init__(f"{who}: {refusal.reason}")
        self.decision = decision
        self.budget_id = refusal.budget_id
        self.reason = refusal.reason
        self.remaining = refusal.remaining
        self.resets_at = refusal.resets_at


class AccessDenied(AllotmentError):
    """The service did not accept the API key, or its role or tenant (HTTP 401/403)."""


class StoreError(AllotmentError):
    """The store could not be reached or failed mid-operation."""
