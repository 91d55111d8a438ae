"""What the reads ask for: a page of the ledger, a usage breakdown, and its rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from allotment.core.ledger import EventStatus
from allotment.core.subjects import check_identifier
from allotment.errors import ValidationError

__all__ = ["EventQuery", "UsageQuery", "UsageRow"]


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Totals for one tenant grouped by dimensions, over whole UTC hours."""

    tenant: str
    by: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    #: biggest first by ``calls``, ``errors``, ``blocked``, ``cost``, ``tokens`` or a
    #: usage field (None: in group order)
    order: str | None = None
    #: at most this many rows (after ordering)
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a usage breakdown."""

    group: dict[str, str]
    calls: int = 0
    errors: int = 0
    blocked: int = 0
    totals: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A page of the ledger, newest last, after the cursor ``after_id``."""

    tenant: str | None = None
    status: EventStatus | None = None
    price_source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_id: int = 0
    limit: int = 100

    def __post_init__(self) -> None:
        status: Any = self.status
        if status is not None and not isinstance(status, EventStatus):
            try:
                object.__setattr__(self, "status", EventStatus(status))
            except ValueError:
                raise ValidationError("status", f"unknown event status {status!r}") from None
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise ValidationError("limit", "must be an integer")
        if not 1 <= self.limit <= 10_000:
            raise ValidationError("limit", "must be between 1 and 10000")
        if isinstance(self.after_id, bool) or not isinstance(self.after_id, int):
            raise ValidationError("after_id", "must be an integer")
        if not 0 <= self.after_id < 2**63:
            raise ValidationError("after_id", "must be a non-negative 64-bit integer")
        check_identifier(self.tenant, "tenant")
        check_identifier(self.price_source, "price_source")
        for name in ("since", "until"):
            at = getattr(self, name)
            if at is not None and (not isinstance(at, datetime) or at.utcoffset() is None):
                raise ValidationError(name, "must be a timezone-aware datetime")
