"""Row conversions shared by the SQL stores (SQLite and PostgreSQL use one schema).

Times are integer microseconds since the Unix epoch; subjects, estimates,
charges, price records and grant metadata are JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import orjson

from allotment.core.budgets import Budget, in_order
from allotment.core.credits import CreditEntry, EntryKind, Grant, GrantKind
from allotment.core.fx import Rates
from allotment.core.keys import ApiKey, Role
from allotment.core.ledger import Charge, Event, EventStatus, Reservation, ReservationState
from allotment.core.plans import Assignment, Plan, Usage
from allotment.core.subjects import Subject, parse_subject
from allotment.core.topups import TopUp, TopUpState
from allotment.core.usage import USAGE_FIELDS, parse_usage, usage_from_row
from allotment.lifecycle.tx import ROLLUP_TOTALS, RollupKey

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
EVENT_COLUMNS = (
    "id request_id status tenant user key agent feature subject provider model "
    + " ".join(USAGE_FIELDS)
    + " currency price price_source reason budget_id payload_hash occurred_at recorded_at"
    + " estimate"
).split()


#: a rollup row's key columns, in ``RollupKey``'s order
ROLLUP_KEY_COLUMNS = ("tenant", "hour", '"user"', "key", "agent", "feature", "provider", "model",
                      "status")  # fmt: skip
#: every column of a rollup row, named: a column a migration adds goes last in the
#: table, wherever its usage field stands in ``ROLLUP_TOTALS``
ROLLUP_COLUMNS = (*ROLLUP_KEY_COLUMNS, "calls", *ROLLUP_TOTALS)
_ROLLUP_KEY_WIDTH = len(ROLLUP_KEY_COLUMNS)
#: a grant's columns, in the order ``grant_values`` writes and ``grant_from_row`` reads
GRANT_COLUMNS = (
    "pool member id amount kind priority effective_at expires_at created_at voided_at closed"
    " idempotency_key metadata"
).split()
#: a credit entry's columns, its id first (the database assigns it)
CREDIT_ENTRY_COLUMNS = "id pool member kind amount balance at grant_id request_id".split()
#: a top-up's columns, in the order ``topup_values`` writes and ``topup_from_row`` reads
TOPUP_COLUMNS = (
    "id pool member amount bucket state created_at updated_at attempts next_attempt_at"
    " claimed_until error grant_id"
).split()

#: a plan assignment's columns, in the order ``assignment_values`` writes and
#: ``assignment_from_row`` reads
ASSIGNMENT_COLUMNS = ("tenant", "member", "plan", "epoch", "usage", "assigned_at")
#: a plan's columns, in the order ``plan_values`` writes
PLAN_COLUMNS = ("key", "id", "tenant", "spec")


def dumps(value: Any) -> str:
    """JSON text of ``value`` (orjson: several times the standard library's speed)."""
    return orjson.dumps(value).decode()


loads = orjson.loads


def to_us(value: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch."""
    return (value - _EPOCH) // _MICRO


def from_us(value: int) -> datetime:
    """Integer microseconds since the epoch as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=value)


def statements(sql: str) -> list[str]:
    """The statements of a migration script: ``--`` comments dropped, split on ``;``."""
    code = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    return [s for s in code.split(";") if s.strip()]


@dataclass(frozen=True, slots=True)
class Config:
    """Budgets and plans by tenant, and exchange rates, as of one config version."""

    version: int
    budgets: dict[str | None, list[Budget]]
    rates: Rates
    #: plans by tenant, each tenant's sorted by (id, key)
    plans: dict[str | None, list[Plan]] = field(default_factory=dict)
    #: what ``budgets_for`` answered for each tenant so far: sorted once per version
    _applicable: dict[str, list[Budget]] = field(default_factory=dict, compare=False, repr=False)

    def budgets_for(self, tenant: str) -> list[Budget]:
        """The deployment-wide budgets and ``tenant``'s, with the budgets of the plans
        ``plans_for`` lists, ``in_order`` (do not change it)."""
        found = self._applicable.get(tenant)
        if found is None:
            planned = (b for plan in self.plans_for(tenant) for b in plan.budgets)
            found = [*self.budgets.get(None, ()), *self.budgets.get(tenant, ()), *planned]
            found = self._applicable[tenant] = in_order(found)
        return found

    def plans_for(self, tenant: str) -> list[Plan]:
        """The deployment-wide plans, then ``tenant``'s."""
        return [*self.plans.get(None, ()), *self.plans.get(tenant, ())]

    def all_plans(self, tenant: str | None) -> list[Plan]:
        """``tenant``'s plans (None: every plan, deployment-wide ones first)."""
        if tenant is not None:
            return list(self.plans.get(tenant, ()))
        return sorted((p for group in self.plans.values() for p in group), key=_plan_order)

    def all_budgets(self, tenant: str | None) -> list[Budget]:
        """``tenant``'s budgets (None: every budget), ``in_order``."""
        if tenant is not None:
            return in_order(self.budgets.get(tenant, ()))
        return in_order(b for group in self.budgets.values() for b in group)

    def cached(self, tenant: str) -> list[Budget] | None:
        """The budgets that apply to ``tenant``, or None before the first load."""
        if self.version < 0:
            return None
        return list(self.budgets_for(tenant))


def _plan_order(plan: Plan) -> tuple[bool, str, str]:
    return plan.tenant is not None, plan.id, plan.key


def plans_by_tenant(plans: Iterable[Plan]) -> dict[str | None, list[Plan]]:
    """``plans`` grouped by tenant, each group sorted as ``Config.all_plans`` lists it."""
    index: dict[str | None, list[Plan]] = {}
    for plan in sorted(plans, key=_plan_order):
        index.setdefault(plan.tenant, []).append(plan)
    return index


def plan_values(plan: Plan) -> tuple[Any, ...]:
    """A plan as a row of ``PLAN_COLUMNS``: its spec as JSON (``Plan.to_spec``)."""
    return plan.key, plan.id, plan.tenant, json.dumps(plan.to_spec())


def plan_from_spec(spec: str) -> Plan:
    """A stored plan's ``spec`` column as its plan."""
    return Plan.from_spec(json.loads(spec))


def assignment_values(a: Assignment) -> tuple[Any, ...]:
    """An assignment as a row of ``ASSIGNMENT_COLUMNS``."""
    return a.tenant, a.member, a.plan, a.epoch, a.usage.value, to_us(a.assigned_at)


def assignment_from_row(row: Sequence[Any]) -> Assignment:
    """A row of ``ASSIGNMENT_COLUMNS`` as its assignment."""
    tenant, member, plan, epoch, usage, assigned_at = row
    return Assignment(tenant, member, plan, from_us(assigned_at), epoch, Usage(usage))


def opt_us(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def opt_from_us(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


def key_from_row(row: Sequence[Any]) -> ApiKey:
    key_id, tenant, role, name, created, revoked, used = row[:7]
    return ApiKey(
        key_id, Role(role), tenant, from_us(created), name,
        None if revoked is None else from_us(revoked), None if used is None else from_us(used),
    )  # fmt: skip


@lru_cache(maxsize=4096)
def subject_json(subject: Subject) -> str:
    return dumps(subject.to_dict())


@lru_cache(maxsize=4096)
def subject_from_json(text: str) -> Subject:
    """A stored subject (the same few come back over and over: parsed once)."""
    return parse_subject(loads(text))


def reservation_from_row(row: Sequence[Any]) -> Reservation:
    (request_id, _tenant, state, payload_hash, commit_hash, event_id, subject, provider, model,
     estimate, charges, authorized_at, expires_at, ttl, max_until, slots) = row  # fmt: skip
    return Reservation(
        request_id=request_id,
        subject=subject_from_json(subject),
        provider=provider,
        model=model,
        estimate=parse_usage(loads(estimate), "estimate"),
        charges=tuple(Charge(*c) for c in loads(charges)),
        authorized_at=from_us(authorized_at),
        expires_at=from_us(expires_at),
        payload_hash=payload_hash,
        state=ReservationState(state),
        commit_hash=commit_hash,
        event_id=event_id,
        ttl=ttl,
        max_until=None if max_until is None else from_us(max_until),
        slots=slots,
    )


def reservation_values(r: Reservation) -> tuple[Any, ...]:
    """A reservation as a row of ``reservations``, in column order."""
    return (
        r.request_id, r.subject.tenant, r.state.value, r.payload_hash, r.commit_hash, r.event_id,
        subject_json(r.subject), r.provider, r.model, dumps(r.estimate.to_dict()),
        dumps([tuple(c) for c in r.charges]), to_us(r.authorized_at), to_us(r.expires_at),
        r.ttl, None if r.max_until is None else to_us(r.max_until), r.slots,
    )  # fmt: skip


def event_values(e: Event) -> tuple[Any, ...]:
    s, u = e.subject, e.usage
    return (
        e.request_id, e.status.value, s.tenant, s.user, s.key, s.agent, s.feature,
        subject_json(s), e.provider, e.model,
        *(getattr(u, c) for c in USAGE_FIELDS),
        e.currency, dumps(e.price), e.price.get("source"), e.reason, e.budget_id,
        e.payload_hash,
        to_us(e.occurred_at), to_us(e.recorded_at),
        None if e.estimate is None else dumps(e.estimate.to_dict()),
    )  # fmt: skip


def event_from_row(row: Sequence[Any]) -> Event:
    values = dict(zip(EVENT_COLUMNS, row, strict=True))
    return Event(
        id=values["id"],
        request_id=values["request_id"],
        status=EventStatus(values["status"]),
        subject=subject_from_json(values["subject"]),
        provider=values["provider"],
        model=values["model"],
        usage=usage_from_row([values[c] for c in USAGE_FIELDS]),
        occurred_at=from_us(values["occurred_at"]),
        recorded_at=from_us(values["recorded_at"]),
        currency=values["currency"],
        reason=values["reason"],
        budget_id=values["budget_id"],
        price=loads(values["price"]),
        payload_hash=values["payload_hash"],
        estimate=None if values["estimate"] is None else parse_usage(loads(values["estimate"])),
    )


def rollup_from_row(row: Sequence[Any]) -> tuple[RollupKey, Sequence[int]]:
    """A row of ``ROLLUP_COLUMNS`` as its key and its values (calls, then the totals)."""
    key: RollupKey = tuple(row[:_ROLLUP_KEY_WIDTH])
    return key, row[_ROLLUP_KEY_WIDTH:]


def grant_values(g: Grant) -> tuple[Any, ...]:
    """A grant as a row of ``GRANT_COLUMNS``."""
    return (
        g.pool, g.member, g.id, g.amount, g.kind.value, g.priority, to_us(g.effective_at),
        opt_us(g.expires_at), to_us(g.created_at), opt_us(g.voided_at), g.closed,
        g.idempotency_key, dumps(dict(g.metadata)),
    )  # fmt: skip


#: grants already decoded, by their row: every call on a pool reads all its grants, and
#: decoding (with Grant's checks) took 20 % of a pool's pair (bench.credits)
_DECODED_GRANTS: dict[tuple[Any, ...], Grant] = {}
_DECODED_MAX = 10_000


def grant_from_row(row: Sequence[Any]) -> Grant:
    """A row of ``GRANT_COLUMNS`` as its grant (``closed``: SQLite's 0/1 or a boolean).

    The same row gives the same (immutable) grant back from ``_DECODED_GRANTS``;
    a row that changed (closed, voided) is another key.
    """
    key = tuple(row)
    found = _DECODED_GRANTS.get(key)
    if found is None:
        if len(_DECODED_GRANTS) >= _DECODED_MAX:
            _DECODED_GRANTS.clear()
        found = _DECODED_GRANTS[key] = _decode_grant(key)
    return found


def _decode_grant(row: tuple[Any, ...]) -> Grant:
    (pool, member, grant_id, amount, kind, priority, effective_at, expires_at, created_at,
     voided_at, closed, idempotency_key, metadata) = row  # fmt: skip
    return Grant(
        pool=pool,
        member=member,
        id=grant_id,
        amount=amount,
        kind=GrantKind(kind),
        effective_at=from_us(effective_at),
        created_at=from_us(created_at),
        expires_at=opt_from_us(expires_at),
        priority=priority,
        idempotency_key=idempotency_key,
        metadata=MappingProxyType(loads(metadata)),  # shared by every reader: read-only
        voided_at=opt_from_us(voided_at),
        closed=bool(closed),
    )


def credit_entry_values(e: CreditEntry) -> tuple[Any, ...]:
    """A credit entry as a row of ``CREDIT_ENTRY_COLUMNS`` without its id."""
    return (e.pool, e.member, e.kind.value, e.amount, e.balance, to_us(e.at), e.grant_id,
            e.request_id)  # fmt: skip


def credit_entry_from_row(row: Sequence[Any]) -> CreditEntry:
    """A row of ``CREDIT_ENTRY_COLUMNS`` as its credit entry."""
    entry_id, pool, member, kind, amount, balance, at, grant_id, request_id = row
    return CreditEntry(
        pool, member, EntryKind(kind), amount, balance, from_us(at), grant_id, request_id, entry_id
    )


def topup_values(t: TopUp) -> tuple[Any, ...]:
    """A top-up as a row of ``TOPUP_COLUMNS``."""
    return (
        t.id, t.pool, t.member, t.amount, t.bucket, t.state.value, to_us(t.created_at),
        to_us(t.updated_at), t.attempts, opt_us(t.next_attempt_at), opt_us(t.claimed_until),
        t.error, t.grant_id,
    )  # fmt: skip


def topup_from_row(row: Sequence[Any]) -> TopUp:
    """A row of ``TOPUP_COLUMNS`` as its top-up."""
    (topup_id, pool, member, amount, bucket, state, created_at, updated_at, attempts,
     next_attempt_at, claimed_until, error, grant_id) = row  # fmt: skip
    return TopUp(
        id=topup_id,
        pool=pool,
        member=member,
        amount=amount,
        bucket=bucket,
        state=TopUpState(state),
        created_at=from_us(created_at),
        updated_at=from_us(updated_at),
        attempts=attempts,
        next_attempt_at=opt_from_us(next_attempt_at),
        claimed_until=opt_from_us(claimed_until),
        error=error,
        grant_id=grant_id,
    )
