"""What ``Client`` and ``AsyncClient`` share: request building, retries, reading answers.

The two faces differ only in how they send a ``Call`` (httpx's own clients
are built the same way); everything a request carries, and every rule about
retrying it or reading its answer, is written here once. So is the wire form
of credit pools' answers (``grant_json``, ``pool_json``, ``credit_entry_json``)
and of plans' (``plan_json``): the service sends it, the CLI prints it from a
local Governor, and the clients read it back as ``RemoteGrant``,
``RemotePoolStatus``, ``RemoteCreditEntry``, ``RemoteTopUp`` and ``RemotePlan``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from allotment._answers import RemoteDecision, RemoteKey, key_from
from allotment.config import load_budget_specs, load_plan_specs, load_rates
from allotment.core.budgets import Budget
from allotment.core.credits import CreditEntry, Grant
from allotment.core.fx import FxRate
from allotment.core.plans import Plan
from allotment.core.routes import Route
from allotment.core.subjects import Subject
from allotment.core.topups import AutoTopUp, TopUp, TopUpStatus
from allotment.core.units import UNITS, shown
from allotment.core.usage import Usage
from allotment.errors import (
    AccessDenied,
    AllotmentError,
    ConflictError,
    NotFoundError,
    StoreError,
    ValidationError,
)
from allotment.governor import Governor, SubjectLike, UsageLike
from allotment.lifecycle.credits import GrantBalance, PoolStatus
from allotment.store.base import EventQuery

__all__ = [
    "BACKOFF",
    "Base",
    "Call",
    "FileConfig",
    "RemoteCreditEntry",
    "RemoteGrant",
    "RemoteGrantBalance",
    "RemotePoolStatus",
    "RemoteTopUp",
    "TopUpStanding",
    "answer",
    "credit_entry_from",
    "credit_entry_json",
    "file_config",
    "grant_from",
    "grant_json",
    "plan_json",
    "plan_spec_of",
    "pool_answer",
    "pool_from",
    "pool_json",
    "spec_of",
    "tenant_of",
    "topup_standing",
    "whole",
]

#: seconds before the 1st, 2nd, 3rd… retry (the last repeats), each times 0.5-1.5
BACKOFF = (0.1, 0.3, 1.0)


@dataclass(frozen=True, slots=True)
class Call:
    """One request to send: built by the base, sent by either face."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    #: safe to send again after a 503 or a lost connection
    retry: bool = True


class Base:
    """Request building, retry policy and answer reading shared by both clients."""

    def __init__(self, api_key: str, retries: int, backoff: Sequence[float]) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValidationError("retries", "must be a whole number >= 0")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.retries = retries
        self._backoff = tuple(backoff) or (0.0,)
        #: what the commits of degraded grants must send (see ``Governor._degraded``)
        self._degraded: dict[str, dict[str, Any]] = {}

    # retries
    def _again(self, call: Call, attempt: int, response: httpx.Response | None) -> bool:
        """Whether to send ``call`` again after ``attempt`` (0-based) got ``response``.

        ``response`` None means the connection failed or timed out.
        """
        if not call.retry or attempt >= self.retries:
            return False
        return response is None or response.status_code == 503

    def _delay(self, attempt: int) -> float:
        base = self._backoff[min(attempt, len(self._backoff) - 1)]
        return base * (0.5 + random.random())

    @staticmethod
    def _unreachable(base: httpx.URL, call: Call, exc: httpx.HTTPError) -> StoreError:
        what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        reason = str(exc) or type(exc).__name__
        return StoreError(
            f"cannot reach the service at {base}: {call.method} {call.path} {what}: {reason}"
        )

    # the call lifecycle
    def _granted(self, decision: RemoteDecision) -> RemoteDecision:
        """Remember what a degraded grant's commit needs, so a plain commit meters it."""
        if decision.degraded and decision.commit_with:
            if len(self._degraded) >= 10_000:
                del self._degraded[next(iter(self._degraded))]
            self._degraded[decision.request_id] = decision.commit_with
        return decision

    @staticmethod
    def _authorize(
        request_id: str,
        subject: SubjectLike,
        provider: str,
        model: str,
        estimate: UsageLike | None,
        ttl: int | None,
        request: Mapping[str, Any] | None,
        max_duration: int | None,
        routes: Sequence[Mapping[str, Any] | Route] | None,
    ) -> Call:
        candidates = None if routes is None else [
            r.to_dict() if isinstance(r, Route) else dict(r) for r in routes
        ]  # fmt: skip
        body = {"request_id": request_id, "subject": subject, "provider": provider, "model": model,
                "estimate": estimate, "ttl_seconds": ttl, "request": request,
                "max_duration_seconds": max_duration, "routes": candidates}  # fmt: skip
        return Call("POST", "/v1/authorize", _body(body))

    @staticmethod
    def _heartbeat(lease_id: str, ttl: int | None, tenant: str | None) -> Call:
        path = f"/v1/leases/{quote(lease_id, safe='')}/heartbeat"
        return Call("POST", path, _body({"ttl_seconds": ttl, "tenant": tenant}))

    def _commit(
        self, request_id: str, usage: UsageLike, status: str, fields: dict[str, Any]
    ) -> Call:
        extra = self._degraded.get(request_id, {}) if fields.get("subject") is None else {}
        body = {"request_id": request_id, "usage": usage, "status": status, **extra}
        return Call("POST", "/v1/commit", _body(body | _clean(fields)))

    @staticmethod
    def _release(request_id: str, reason: str, tenant: str | None) -> Call:
        body = {"request_id": request_id, "reason": reason, "tenant": tenant}
        return Call("POST", "/v1/release", _body(body))

    @staticmethod
    def _record_many(events: Iterable[Mapping[str, Any]]) -> Call:
        return Call("POST", "/v1/events", {"events": [_body(e) for e in events]})

    @staticmethod
    def _status(subject: SubjectLike, provider: str | None, model: str | None, view: str) -> Call:
        params = _subject_params(subject) | {"provider": provider, "model": model, "view": view}
        return Call("GET", "/v1/status", params=_clean(params))

    @staticmethod
    def _usage(
        tenant: str,
        by: Iterable[str],
        since: datetime | str | None,
        until: datetime | str | None,
        order: str | None,
        limit: int | None,
    ) -> Call:
        by = [by] if isinstance(by, str) else list(by)
        params = {"tenant": tenant, "by": by, "from": _json(since), "to": _json(until),
                  "order": order, "limit": limit}  # fmt: skip
        return Call("GET", "/v1/usage", params=_clean(params))

    @staticmethod
    def _events(query: EventQuery | None) -> Call:
        q = query or EventQuery()
        params = {"tenant": q.tenant, "status": None if q.status is None else q.status.value,
                  "price_source": q.price_source, "since": _json(q.since),
                  "until": _json(q.until), "cursor": q.after_id, "limit": q.limit}  # fmt: skip
        return Call("GET", "/v1/events", params=_clean(params))

    # budgets and keys: changes are sent once (a repeated create would find its own 409)
    @staticmethod
    def _budget(
        method: str, budget_id: str = "", spec: Any = None, tenant: str | None = None
    ) -> Call:
        path = "/v1/budgets" + (f"/{quote(budget_id, safe='')}" if budget_id else "")
        # None stays: in a PATCH it clears the field (a replacement sends every field)
        body = None if spec is None else _json(spec)
        return Call(method, path, body, params=_clean({"tenant": tenant}), retry=method == "GET")

    @staticmethod
    def _config(
        budgets: Sequence[Budget | Mapping[str, Any]],
        rates: Sequence[FxRate | Mapping[str, Any]],
        plans: Sequence[Plan | Mapping[str, Any]] = (),
    ) -> Call:
        """Rates, budgets and plans applied at once: sent again after a lost answer, it
        sets them again (a plan then counts one more version)."""
        body: dict[str, Any] = {"budgets": [spec_of(b) for b in budgets],
                "rates": [r.to_spec() if isinstance(r, FxRate) else r for r in rates]}  # fmt: skip
        if plans:  # a service without plans takes the body it took before
            body["plans"] = [plan_spec_of(p) for p in plans]
        return Call("POST", "/v1/config", _json(body))

    @staticmethod
    def _set_rate(
        source: str, target: str, rate: Decimal | str, effective_from: datetime | None
    ) -> Call:
        body = _clean({"source": source, "target": target, "rate": rate,
                       "effective_from": effective_from})  # fmt: skip
        return Call("POST", "/v1/rates", _json(body))

    @staticmethod
    def _list(path: str, tenant: str | None) -> Call:
        return Call("GET", path, params=_clean({"tenant": tenant}))

    @staticmethod
    def _create_key(role: str, tenant: str | None, name: str | None) -> Call:
        body = _clean({"role": role, "tenant": tenant, "name": name})
        return Call("POST", "/v1/keys", body, retry=False)

    @staticmethod
    def _revoke_key(key_id: str) -> Call:
        return Call("DELETE", f"/v1/keys/{quote(key_id, safe='')}", retry=False)

    @staticmethod
    def _new_key(data: Any) -> tuple[RemoteKey, str]:
        return key_from(data), str(data["secret"])

    # plans: changes are sent once, as budget changes are
    @staticmethod
    def _plan(method: str, plan_id: str = "", spec: Any = None, tenant: str | None = None) -> Call:
        path = "/v1/plans" + (f"/{quote(plan_id, safe='')}" if plan_id else "")
        body = None if spec is None else _json(spec)
        return Call(method, path, body, params=_clean({"tenant": tenant}), retry=method == "GET")

    @staticmethod
    def _set_plan(plan: Plan | Mapping[str, Any]) -> Call:
        """``PUT /v1/plans/{id}``: the id is the spec's (a ValidationError without one)."""
        spec = plan_spec_of(plan)
        plan_id = spec.get("id")
        if not isinstance(plan_id, str) or not plan_id:
            raise ValidationError("id", "a plan needs an id")
        return Base._plan("PUT", plan_id, spec)

    @staticmethod
    def _assign_plan(tenant: str, member: str, plan: str, usage: str) -> Call:
        body = {"tenant": tenant, "member": member, "plan": plan, "usage": usage}
        return Call("PUT", "/v1/plans/assignments", body, retry=False)

    @staticmethod
    def _plan_of(tenant: str, member: str) -> Call:
        return Call("GET", "/v1/plans/assignments", params={"tenant": tenant, "member": member})

    # credit pools
    @staticmethod
    def _add_grant(pool: str, amount: Decimal | int | str, terms: dict[str, Any]) -> Call:
        """A grant to add: sent again after a lost answer only under an idempotency key
        (then the service answers the grant it added)."""
        body = {"amount": amount, **terms}
        if body.get("member") == "":
            del body["member"]
        retry = terms.get("idempotency_key") is not None
        return Call("POST", f"{_pool_path(pool)}/grants", _body(body), retry=retry)

    @staticmethod
    def _added(data: Any) -> tuple[RemoteGrant, bool]:
        """The grant a ``POST`` answered, and whether it added it (not a replay)."""
        return grant_from(data), not data.get("replayed", False)

    @staticmethod
    def _void_grant(pool: str, grant_id: str, tenant: str | None, member: str) -> Call:
        path = f"{_pool_path(pool)}/grants/{quote(grant_id, safe='')}/void"
        return Call("POST", path, _body({"tenant": tenant, "member": member or None}))

    @staticmethod
    def _pool(pool: str, tenant: str | None, member: str) -> Call:
        params = _clean({"tenant": tenant, "member": member or None})
        return Call("GET", _pool_path(pool), params=params)

    @staticmethod
    def _resume_topups(pool: str, tenant: str | None, member: str) -> Call:
        """Re-enable auto top-up: sent again after a lost answer (the same effect, though
        the answer may then say it was not paused)."""
        body = _body({"tenant": tenant, "member": member or None})
        return Call("POST", f"{_pool_path(pool)}/topups/resume", body)

    @staticmethod
    def _credit_ledger(
        pool: str, tenant: str | None, member: str | None, after_id: int, limit: int
    ) -> Call:
        params = {"tenant": tenant, "member": member, "after_id": after_id, "limit": limit}
        return Call("GET", f"{_pool_path(pool)}/ledger", params=_clean(params))


def _pool_path(pool: str) -> str:
    return f"/v1/pools/{quote(pool, safe='')}"


# --- answers ------------------------------------------------------------------------------


def answer(response: httpx.Response) -> Any:
    """The JSON of a successful answer (None for 204); an error as allotment's exception.

    A 402 or 429 is a refused authorization: its decision is the answer.
    """
    status = response.status_code
    if status in (402, 429):
        return _read(response)["error"]["decision"]
    if status >= 400:
        raise _error(response)
    return None if status == 204 else _read(response)


def _read(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise StoreError(f"HTTP {response.status_code}: not JSON: {response.text[:200]}") from exc


def _error(response: httpx.Response) -> AllotmentError:
    try:
        error = response.json()["error"]
        message = str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return StoreError(f"HTTP {response.status_code}: {response.text[:200]}")
    status = response.status_code
    if status in (400, 413, 422):
        field = str(error.get("field", "body"))
        # The service's message names the field already ("routes: ..."): once is enough.
        return ValidationError(field, message.removeprefix(f"{field}: "))
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return ConflictError(str(error.get("field", "request")), message)
    if status in (401, 403):
        return AccessDenied(message)
    if status == 503:
        return StoreError(message or "the store is unavailable")
    # 405, 500 internal_error: the service failed, not the store
    return AllotmentError(f"HTTP {status} {error.get('code', '')}: {message}")


# --- credit pools on the wire -------------------------------------------------------------


def _pool_unit(budget: Budget, currency: str) -> tuple[str, str | None]:
    """The base unit of a pool's amounts and, for cost, its currency (the pool's own,
    else ``currency``, the ledger's)."""
    unit = UNITS[budget.meter]
    return unit, (budget.currency or currency) if unit == "micros" else None


def grant_json(grant: Grant, budget: Budget, currency: str) -> dict[str, Any]:
    """A grant of pool ``budget`` as the service answers it (``currency``: the ledger's)."""
    unit, money = _pool_unit(budget, currency)
    return grant.to_dict() | {
        "pool": budget.id,
        "tenant": budget.tenant,
        "unit": unit,
        "currency": money,
        "display": {"amount": shown(grant.amount, unit, money)},
    }


#: why auto top-up is not keeping a member topped up, and its latest top-up
#: (``Governor.topup_status``)
TopUpStanding = tuple[TopUpStatus | None, TopUp | None]


def pool_answer(gov: Governor, pool: str, tenant: str | None, member: str) -> dict[str, Any]:
    """A pool member's standing from ``gov``, as ``GET /v1/pools/{id}`` answers it."""
    status = gov.pool(pool, tenant=tenant, member=member)
    standing: TopUpStanding = (None, None)
    if status.budget.auto_topup is not None:
        standing = gov.topup_status(pool, tenant=tenant, member=member)
    return pool_json(status, gov.currency, standing)


def pool_json(
    status: PoolStatus, currency: str, topup: TopUpStanding = (None, None)
) -> dict[str, Any]:
    """A pool member's standing as ``GET /v1/pools/{id}`` answers it; ``topup``: its auto
    top-up's, for a pool that has one."""
    budget = status.budget
    unit, money = _pool_unit(budget, currency)
    grants = [_grant_row(row, unit, money) for row in status.grants]
    return {
        "pool": budget.id,
        "tenant": budget.tenant,
        "member": status.member,
        "meter": budget.meter.value,
        "unit": unit,
        "currency": money,
        "available": status.available,
        "debt": status.debt,
        "grants": grants,
        "auto_topup": _auto_topup_json(budget.auto_topup, topup),
        "display": {
            "available": shown(status.available, unit, money),
            "debt": shown(status.debt, unit, money),
        },
    }


def _auto_topup_json(auto: AutoTopUp | None, topup: TopUpStanding) -> dict[str, Any] | None:
    """A pool's auto top-up in base units, why it is not buying (``status``) and the
    member's latest top-up."""
    if auto is None:
        return None
    status, latest = topup
    return {"threshold": auto.threshold, "amount": auto.amount, "target": auto.target,
            "monthly_cap": auto.monthly_cap, "status": None if status is None else status.value,
            "latest": None if latest is None else latest.to_dict()}  # fmt: skip


def _grant_row(row: GrantBalance, unit: str, money: str | None) -> dict[str, Any]:
    """A grant with its balance, as a pool's standing lists it."""
    amounts = {"amount": row.grant.amount, "used": row.used, "reserved": row.reserved,
               "available": row.available}  # fmt: skip
    display = {k: shown(v, unit, money) for k, v in amounts.items()}
    return row.grant.to_dict() | amounts | {"display": display}


def credit_entry_json(entry: CreditEntry, budget: Budget, currency: str) -> dict[str, Any]:
    """A credit entry of pool ``budget`` as the service answers it."""
    unit, money = _pool_unit(budget, currency)
    display = {"amount": shown(entry.amount, unit, money),
               "balance": shown(entry.balance, unit, money)}  # fmt: skip
    return entry.to_dict() | {"unit": unit, "currency": money, "display": display}


#: the fields of ``Grant.to_dict``, which a pool's grant rows carry too
_GRANT_FIELDS = ("id", "member", "amount", "kind", "priority", "effective_at", "expires_at",
                 "idempotency_key", "metadata", "created_at", "voided_at")  # fmt: skip


@dataclass(frozen=True, slots=True)
class RemoteGrant:
    """A grant (``Grant``), with its pool, the ``unit`` of ``amount`` and the amount for
    people (``display``); times are ISO 8601 strings."""

    id: str
    member: str
    amount: int
    kind: str
    effective_at: str
    created_at: str
    expires_at: str | None = None
    priority: int = 0
    idempotency_key: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    voided_at: str | None = None
    pool: str | None = None
    tenant: str | None = None
    unit: str | None = None
    currency: str | None = None
    display: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as the service sent it."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RemoteGrantBalance:
    """A grant with what has been drawn (``used``), held (``reserved``) and is left
    (``GrantBalance``); ``display`` has the four amounts for people."""

    grant: RemoteGrant
    used: int
    reserved: int
    available: int
    display: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as the service sent it (the grant's fields beside the amounts)."""
        own = {"used": self.used, "reserved": self.reserved, "available": self.available}
        grant = self.grant.to_dict()
        return {k: grant[k] for k in _GRANT_FIELDS} | own | {"display": self.display}


@dataclass(frozen=True, slots=True)
class RemotePoolStatus:
    """A pool member's grants (burn order), available credit and debt (``PoolStatus``;
    the pool is named by ``pool`` and ``tenant`` rather than a ``Budget``)."""

    pool: str
    tenant: str | None
    member: str
    meter: str
    unit: str
    currency: str | None
    available: int
    debt: int
    grants: tuple[RemoteGrantBalance, ...] = ()
    #: the pool's auto top-up in base units, its ``status`` and the ``latest`` top-up
    #: (None: the pool has none)
    auto_topup: dict[str, Any] | None = None
    display: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as the service sent it."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return out | {"grants": [g.to_dict() for g in self.grants]}


@dataclass(frozen=True, slots=True)
class RemoteTopUp:
    """One auto top-up of a pool member (``TopUp``): ``amount`` in the pool's unit,
    ``state`` pending, succeeded, failed or resumed; times are ISO 8601 strings."""

    id: str
    member: str
    amount: int
    state: str
    created_at: str
    updated_at: str
    attempts: int = 0
    next_attempt_at: str | None = None
    error: str | None = None
    grant_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as the service sent it."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RemoteCreditEntry:
    """One movement of credit (``CreditEntry``), with the ``unit`` of its amounts."""

    id: int | None
    member: str
    kind: str
    amount: int
    balance: int
    at: str
    grant_id: str | None = None
    request_id: str | None = None
    unit: str | None = None
    currency: str | None = None
    display: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as the service sent it."""
        return asdict(self)


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that ``cls`` has (a newer service may send more)."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in data.items() if k in names}


def grant_from(data: Mapping[str, Any]) -> RemoteGrant:
    """A grant, as ``POST /v1/pools/{id}/grants`` and its ``void`` answer it."""
    return RemoteGrant(**_known(RemoteGrant, data))


def pool_from(data: Mapping[str, Any]) -> RemotePoolStatus:
    """A pool member's standing, as ``GET /v1/pools/{id}`` answers it."""
    named = {k: data.get(k) for k in ("pool", "tenant", "unit", "currency")}
    rows = tuple(_balance_from(row, named) for row in data.get("grants", ()))
    return RemotePoolStatus(**_known(RemotePoolStatus, data) | {"grants": rows})


def _balance_from(row: Mapping[str, Any], named: dict[str, Any]) -> RemoteGrantBalance:
    """A grant row of a pool's standing: its grant (named by the pool), and its amounts."""
    display = row.get("display") or {}
    own = {k: row[k] for k in _GRANT_FIELDS if k in row}
    amount = {"amount": display["amount"]} if "amount" in display else None
    grant = grant_from(own | named | {"display": amount})
    return RemoteGrantBalance(grant, row["used"], row["reserved"], row["available"],
                              row.get("display"))  # fmt: skip


def topup_standing(data: Mapping[str, Any]) -> tuple[str | None, RemoteTopUp | None]:
    """A pool's auto top-up status and latest top-up, from ``GET /v1/pools/{id}``."""
    auto = data.get("auto_topup") or {}
    latest = auto.get("latest")
    topup = None if latest is None else RemoteTopUp(**_known(RemoteTopUp, latest))
    return auto.get("status"), topup


def credit_entry_from(data: Mapping[str, Any]) -> RemoteCreditEntry:
    """A credit entry, as ``GET /v1/pools/{id}/ledger`` answers it."""
    return RemoteCreditEntry(**_known(RemoteCreditEntry, data))


# --- plans on the wire --------------------------------------------------------------------


def plan_json(plan: Plan) -> dict[str, Any]:
    """A plan as the service answers it: its spec form and ``key``, where it is stored."""
    return plan.to_spec() | {"key": plan.key}


# --- requests -----------------------------------------------------------------------------


def tenant_of(subject: SubjectLike) -> str | None:
    if isinstance(subject, Subject):
        return subject.tenant
    tenant = subject.get("tenant")
    return tenant if isinstance(tenant, str) else None


def _subject_params(subject: SubjectLike) -> dict[str, Any]:
    """A subject as ``/v1/status`` query parameters (``groups`` as repeated ``group``)."""
    data = subject.to_dict() if isinstance(subject, Subject) else dict(subject)
    params = {k: v for k, v in data.items() if k not in ("groups", "tags")}
    if data.get("groups"):
        params["group"] = list(data["groups"])
    return params


def spec_of(budget: Budget | Mapping[str, Any]) -> dict[str, Any]:
    return budget.to_spec() if isinstance(budget, Budget) else dict(budget)


def whole(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of ``spec``, defaults included, so a PATCH replaces the budget wholesale.

    Parsing here also refuses a bad spec before anything is sent.
    """
    return Budget.from_spec(spec).to_spec()


def plan_spec_of(plan: Plan | Mapping[str, Any]) -> dict[str, Any]:
    return plan.to_spec() if isinstance(plan, Plan) else dict(plan)


#: a config file's budgets, rates and plans, as ``POST /v1/config`` takes them
FileConfig = tuple[list[dict[str, Any]], list[dict[str, str]], list[dict[str, Any]]]


def file_config(path: str | Path) -> FileConfig:
    """The budgets, rates and plans of a config file, each checked before any is sent
    (a plan on its own: the service checks it against the others)."""
    rates = [r.to_spec() for r in load_rates(path)]
    specs = load_budget_specs(path)
    for i, spec in enumerate(specs):
        try:
            Budget.from_spec(spec)
        except ValidationError as exc:
            raise exc.within(f"budgets[{i}]") from None
    plans = load_plan_specs(path)
    for i, plan in enumerate(plans):
        try:
            Plan.from_spec(plan)
        except ValidationError as exc:
            raise exc.within(f"plans[{i}]") from None
    return [dict(s) for s in specs], rates, [dict(p) for p in plans]


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None and v != []}


def _body(data: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON body: None fields left out, allotment's values in their JSON form."""
    return {k: _json(v) for k, v in data.items() if v is not None}


def _json(value: Any) -> Any:
    """``value`` as JSON can carry it: Subject and Usage as dicts, Decimal as text, ISO times."""
    if isinstance(value, Subject):
        return value.to_dict()
    if isinstance(value, Usage):
        return {k: v for k, v in value.to_dict().items() if v is not None}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json(v) for v in value]
    return value
