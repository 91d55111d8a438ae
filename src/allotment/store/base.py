"""The store protocol every backend implements, and the requests it takes.

A store guarantees atomicity: authorize checks and reserves every applicable
budget in one transaction (or refuses and reserves nothing); commit, release
and record are one transaction each. Backends implement the small ``Tx``
primitive protocol in ``allotment.store._ops`` and inherit the compound
operations from ``allotment.store._transactional.TransactionalStore``, so the
semantics are written once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from allotment.core.budgets import Budget, Call
from allotment.core.decisions import BudgetView, Decision, Refusal, Uncovered, Warning
from allotment.core.fx import FxRate
from allotment.core.keys import ApiKey
from allotment.core.ledger import CommitResult, Event, EventStatus, ReservationState
from allotment.core.subjects import Subject, check_identifier
from allotment.core.usage import Usage
from allotment.errors import ValidationError

__all__ = [
    "ArchiveStats",
    "AuthorizeRequest",
    "CommitRequest",
    "EventQuery",
    "PriceFn",
    "RebuildStats",
    "RecordRequest",
    "Store",
    "UsageQuery",
    "UsageRow",
]

#: Prices a call: ``(call, usage, at) -> (usage with cost_micros, price record)``.
PriceFn = Callable[[Call, Usage, datetime], tuple[Usage, dict[str, Any]]]


def _no_price(call: Call, usage: Usage, at: datetime) -> tuple[Usage, dict[str, Any]]:
    return usage, {}


@dataclass(slots=True)
class AuthorizeRequest:
    """Reserve ``estimate`` for ``call`` until ``ttl_seconds`` from now."""

    request_id: str
    call: Call
    estimate: Usage
    ttl_seconds: int
    payload_hash: str
    price: dict[str, Any] = field(default_factory=dict)
    #: decided before the store was asked (an unknown model under ``deny``)
    refusal: Refusal | None = None
    #: the currency of the estimate's cost
    currency: str | None = None
    #: the parts ``payload_hash`` was made of (to match a fingerprint kept by an older version)
    payload: tuple[object, ...] = ()
    #: warnings known before the store was asked (an unknown model priced at the fallback)
    warnings: tuple[Warning, ...] = ()
    #: what to do when no budget applies
    uncovered: Uncovered = Uncovered.WARN


@dataclass(slots=True)
class CommitRequest:
    """Replace a reservation with what the call really used.

    ``subject`` (with ``provider`` and ``model``) lets a commit for a request
    id that was never authorized be metered post hoc.
    """

    request_id: str
    usage: Usage
    status: EventStatus
    payload_hash: str
    currency: str
    price: PriceFn = _no_price
    reason: str | None = None
    provider: str | None = None
    model: str | None = None
    subject: Subject | None = None
    #: whose request id: the caller's tenant, else the subject's (None: any, for
    #: admins and the library, when one tenant uses the id)
    tenant: str | None = None
    #: the parts ``payload_hash`` was made of (to match a fingerprint kept by an older version)
    payload: tuple[object, ...] = ()


@dataclass(slots=True)
class RecordRequest:
    """Meter a call that was never authorized (post-hoc ingestion)."""

    request_id: str
    call: Call
    usage: Usage
    status: EventStatus
    occurred_at: datetime
    payload_hash: str
    currency: str
    price: PriceFn = _no_price
    reason: str | None = None
    #: the parts ``payload_hash`` was made of (to match a fingerprint kept by an older version)
    payload: tuple[object, ...] = ()


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


@dataclass(slots=True)
class RepriceRequest:
    """Re-price the committed calls of a time range (optionally one tenant, models)."""

    since: datetime
    until: datetime
    price: PriceFn
    model: str | None = None
    tenant: str | None = None


@dataclass(slots=True)
class RepriceStats:
    """What a reprice looked at and changed; ``delta_micros`` is new minus old."""

    events: int = 0
    changed: int = 0
    delta_micros: int = 0


@dataclass(frozen=True, slots=True)
class RebuildStats:
    """What a counter rebuild read and wrote."""

    events: int
    counters: int


@dataclass(slots=True)
class ArchiveStats:
    """What ``archive`` moved: events out of the ledger, request ids forgotten."""

    events: int = 0
    request_ids: int = 0


class Store(Protocol):
    """What the governor needs from a backend."""

    url: str

    def authorize(self, request: AuthorizeRequest, now: datetime) -> Decision: ...
    def commit(self, request: CommitRequest, now: datetime) -> CommitResult: ...
    def release(
        self, request_id: str, reason: str, now: datetime, tenant: str | None = None
    ) -> ReservationState: ...
    def record(self, request: RecordRequest, now: datetime) -> CommitResult: ...
    def record_many(
        self, requests: Sequence[RecordRequest], now: datetime
    ) -> list[CommitResult]: ...
    def sweep(self, now: datetime, limit: int = 1000) -> int: ...
    def status(self, call: Call, now: datetime) -> list[BudgetView]: ...
    def usage(self, query: UsageQuery) -> list[UsageRow]: ...
    def events(self, query: EventQuery) -> list[Event]: ...
    def put_budget(self, budget: Budget) -> None: ...
    def put_rate(self, rate: FxRate) -> None: ...
    def create_budget(self, budget: Budget) -> None: ...
    def put_config(self, rates: Sequence[FxRate], budgets: Sequence[Budget]) -> None: ...
    def create_key(self, key: ApiKey, secret_hash: str) -> None: ...
    def create_first_key(self, key: ApiKey, secret_hash: str) -> bool: ...
    def find_key(self, key_id: str) -> tuple[ApiKey, str] | None: ...
    def shared_secret(self, name: str) -> str: ...
    def list_keys(self, tenant: str | None = None) -> list[ApiKey]: ...
    def update_key(self, key: ApiKey) -> None: ...
    def rates(self) -> list[FxRate]: ...
    def find_budget(self, budget_id: str, tenant: str | None = None) -> Budget: ...
    def list_budgets(self, tenant: str | None = None) -> list[Budget]: ...
    def delete_budget(self, budget: Budget) -> None: ...
    def rebuild(self) -> RebuildStats: ...
    def archive(
        self, before: datetime, sink: Callable[[Sequence[Event]], None], page_size: int = 5000
    ) -> ArchiveStats: ...
    def reprice(self, request: RepriceRequest, now: datetime) -> RepriceStats: ...
    def counters(self) -> dict[tuple[str, str, int], tuple[int, int]]: ...
    def held_count(self) -> int: ...
    def cached_budgets(self, tenant: str) -> Sequence[Budget] | None: ...
    def close(self) -> None: ...
