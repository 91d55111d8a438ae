"""``Client`` / ``AsyncClient``: the Governor's methods, over HTTP.

Switching between in-process and remote is one setting::

    gov = Governor("sqlite:///allotment.db")            # in-process
    gov = Client("http://127.0.0.1:8080", api_key=KEY)  # the service

The two faces share one base (``allotment._client_base``), as httpx's do: it
builds every request and reads every answer, so ``Client`` and
``AsyncClient`` (``allotment._async_client``) differ only in how they send.
Answers are typed (``allotment._answers``) with the Governor's attribute
names: ``decision.allowed``, ``decision.refusals[0].reason``,
``view.remaining``. HTTP errors become allotment's own exceptions; a refused
authorization is returned (``allowed=False``), as the Governor does.

**Retries.** A 503 or a connection failure is retried with jittered backoff
(``retries`` times, 0.1 / 0.3 / 1 s by default) for the calls that are safe
to repeat: authorize, commit, release and record (their request ids make a
retry count once), voiding a grant, adding one under an idempotency key,
resuming auto top-up, and every read. Budget, plan and key changes, plan
assignments, and grants without a key, are sent once. When the service stays
unreachable the error is ``StoreError``, never an ``httpx`` exception.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Self, cast

import httpx

from allotment._answers import (
    RemoteBudget,
    RemoteBudgetView,
    RemoteCommitResult,
    RemoteDecision,
    RemoteEvent,
    RemoteHeartbeat,
    RemoteKey,
    RemotePlan,
    RemotePlanAssignment,
    RemoteUsageRow,
    budget_from,
    commit_from,
    decision_from,
    event_from,
    heartbeat_from,
    key_from,
    plan_assignment_from,
    plan_from,
    usage_row_from,
    view_from,
)
from allotment._async_client import AsyncClient
from allotment._client_base import (
    BACKOFF,
    Base,
    Call,
    RemoteCreditEntry,
    RemoteGrant,
    RemoteGrantBalance,
    RemotePoolStatus,
    RemoteTopUp,
    answer,
    credit_entry_from,
    file_config,
    grant_from,
    pool_from,
    spec_of,
    tenant_of,
    topup_standing,
    whole,
)
from allotment.core.budgets import Budget
from allotment.core.decisions import Decision
from allotment.core.fx import FxRate
from allotment.core.ledger import ReservationState
from allotment.core.plans import Plan
from allotment.core.routes import Route
from allotment.errors import BudgetExceeded, ConflictError, NotFoundError
from allotment.governor import Hold, SubjectLike, UsageLike
from allotment.store.base import EventQuery

__all__ = [
    "AsyncClient",
    "Client",
    "RemoteBudget",
    "RemoteBudgetView",
    "RemoteCommitResult",
    "RemoteCreditEntry",
    "RemoteDecision",
    "RemoteEvent",
    "RemoteGrant",
    "RemoteGrantBalance",
    "RemoteHeartbeat",
    "RemoteKey",
    "RemotePlan",
    "RemotePlanAssignment",
    "RemotePoolStatus",
    "RemoteTopUp",
    "RemoteUsageRow",
]


class Client(Base):
    """The service, with the Governor's method names and arguments (sync).

    Args:
        base_url: the service, e.g. ``http://127.0.0.1:8080``.
        api_key: the key sent as ``Authorization: Bearer …``.
        timeout: seconds per request.
        retries: how often a 503 or a failed connection is retried (idempotent calls).
        backoff: seconds before each retry (jittered); the last one repeats.
        transport: an httpx transport (``httpx.MockTransport`` in tests).
        http: an ``httpx.Client`` to lend (proxies, a test client over the app);
            ``base_url``, ``timeout`` and ``transport`` are then its own.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10,
        retries: int = 3,
        backoff: Sequence[float] = BACKOFF,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(api_key, retries, backoff)
        if http is None:
            http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        http.headers.update(self._headers)
        self._http = http

    def _send(self, call: Call) -> Any:
        """Send ``call`` (again, while ``_again`` says so) and read its JSON answer."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, json=call.json, params=call.params
                )
            except httpx.TransportError as exc:
                if not self._again(call, attempt, None):
                    raise self._unreachable(self._http.base_url, call, exc) from exc
            else:
                if not self._again(call, attempt, response):
                    return answer(response)
            time.sleep(self._delay(attempt))
            attempt += 1

    # the call lifecycle
    def authorize(
        self,
        request_id: str,
        subject: SubjectLike,
        provider: str,
        model: str,
        estimate: UsageLike | None = None,
        *,
        ttl: int | None = None,
        request: Mapping[str, Any] | None = None,
        max_duration: int | None = None,
        routes: Sequence[Mapping[str, Any] | Route] | None = None,
    ) -> RemoteDecision:
        """See ``Governor.authorize``; a refusal is returned with ``allowed`` False."""
        call = self._authorize(
            request_id, subject, provider, model, estimate, ttl, request, max_duration, routes
        )
        return self._granted(decision_from(self._send(call)))

    def commit(
        self,
        request_id: str,
        usage: UsageLike,
        *,
        status: str = "success",
        reason: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        subject: SubjectLike | None = None,
        tenant: str | None = None,
    ) -> RemoteCommitResult:
        """See ``Governor.commit``."""
        fields = {"reason": reason, "provider": provider, "model": model, "subject": subject,
                  "tenant": tenant}  # fmt: skip
        return commit_from(self._send(self._commit(request_id, usage, status, fields)))

    def heartbeat(
        self, lease_id: str, *, ttl: int | None = None, tenant: str | None = None
    ) -> RemoteHeartbeat:
        """See ``Governor.heartbeat``."""
        return heartbeat_from(self._send(self._heartbeat(lease_id, ttl, tenant)))

    def release(
        self, request_id: str, reason: str = "released", *, tenant: str | None = None
    ) -> ReservationState:
        """See ``Governor.release``."""
        return ReservationState(self._send(self._release(request_id, reason, tenant))["state"])

    def record(
        self,
        request_id: str,
        subject: SubjectLike,
        provider: str,
        model: str,
        usage: UsageLike,
        *,
        status: str = "success",
        occurred_at: datetime | None = None,
        reason: str | None = None,
    ) -> RemoteCommitResult:
        """See ``Governor.record``."""
        event = {"request_id": request_id, "subject": subject, "provider": provider,
                 "model": model, "usage": usage, "status": status, "occurred_at": occurred_at,
                 "reason": reason}  # fmt: skip
        return self.record_many([event])[0]

    def record_many(self, events: Iterable[Mapping[str, Any]]) -> list[RemoteCommitResult]:
        """See ``Governor.record_many``: all are recorded or none."""
        return [commit_from(e) for e in self._send(self._record_many(events))["events"]]

    def hold(
        self,
        subject: SubjectLike,
        provider: str,
        model: str,
        estimate: UsageLike | None = None,
        *,
        request_id: str | None = None,
        ttl: int | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> Hold:
        """See ``Governor.hold``: raises ``BudgetExceeded`` when refused."""
        request_id = request_id or uuid.uuid4().hex
        decision = self.authorize(
            request_id, subject, provider, model, estimate, ttl=ttl, request=request
        )
        if not decision.allowed:
            raise BudgetExceeded(cast(Decision, decision))
        return Hold(self, decision, tenant_of(subject))

    # reading
    def status(
        self,
        subject: SubjectLike,
        provider: str | None = None,
        model: str | None = None,
        *,
        view: str = "operator",
    ) -> list[RemoteBudgetView]:
        """See ``Governor.status``; ``view="client"`` leaves out the amounts."""
        answer = self._send(self._status(subject, provider, model, view))
        return [view_from(v) for v in answer["budgets"]]

    def usage(
        self,
        tenant: str,
        by: Iterable[str] = (),
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        *,
        order: str | None = None,
        limit: int | None = None,
    ) -> list[RemoteUsageRow]:
        """See ``Governor.usage``."""
        answer = self._send(self._usage(tenant, by, since, until, order, limit))
        return [usage_row_from(r) for r in answer["rows"]]

    def events(self, query: EventQuery | None = None) -> list[RemoteEvent]:
        """See ``Governor.events``: one page, oldest first, after ``query.after_id``."""
        return [event_from(e) for e in self._send(self._events(query))["events"]]

    # budgets
    def create_budget(self, budget: Budget | Mapping[str, Any]) -> RemoteBudget:
        """See ``Governor.create_budget``."""
        return budget_from(self._send(self._budget("POST", spec=spec_of(budget))))

    def set_budget(self, budget: Budget | Mapping[str, Any]) -> RemoteBudget:
        """See ``Governor.set_budget``: create, or replace wholesale."""
        spec = spec_of(budget)
        try:
            return self.create_budget(spec)
        except ConflictError:
            patch = self._budget("PATCH", spec["id"], whole(spec), spec.get("tenant"))
            return budget_from(self._send(patch))

    def update_budget(
        self,
        budget_id: str,
        changes: Mapping[str, Any] | None = None,
        /,
        *,
        tenant: str | None = None,
        **fields: Any,
    ) -> RemoteBudget:
        """See ``Governor.update_budget`` (spec fields, human units)."""
        patch = self._budget("PATCH", budget_id, {**(changes or {}), **fields}, tenant)
        return budget_from(self._send(patch))

    def get_budget(self, budget_id: str, *, tenant: str | None = None) -> RemoteBudget:
        """See ``Governor.get_budget``."""
        return budget_from(self._send(self._budget("GET", budget_id, tenant=tenant)))

    def list_budgets(self, tenant: str | None = None) -> list[RemoteBudget]:
        """See ``Governor.list_budgets``."""
        return [budget_from(b) for b in self._send(self._list("/v1/budgets", tenant))["budgets"]]

    def delete_budget(self, budget_id: str, *, tenant: str | None = None) -> None:
        """See ``Governor.delete_budget``."""
        self._send(self._budget("DELETE", budget_id, tenant=tenant))

    def load_budgets(self, path: str | Path) -> list[RemoteBudget]:
        """See ``Governor.load_budgets``: the file is checked here, then applied by the
        service in one transaction."""
        budgets, rates, plans = file_config(path)
        return self.apply_config(budgets, rates, plans)

    def apply_config(
        self,
        budgets: Sequence[Budget | Mapping[str, Any]],
        rates: Sequence[FxRate | Mapping[str, Any]] = (),
        plans: Sequence[Plan | Mapping[str, Any]] = (),
    ) -> list[RemoteBudget]:
        """See ``Governor.apply_config``: in one request; the budgets."""
        answer = self._send(self._config(budgets, rates, plans))
        return [budget_from(b) for b in answer["budgets"]]

    # plans
    def set_plan(self, plan: Plan | Mapping[str, Any]) -> RemotePlan:
        """See ``Governor.set_plan``: create or replace; the answer has its ``version``."""
        return plan_from(self._send(self._set_plan(plan)))

    def get_plan(self, plan_id: str, *, tenant: str | None = None) -> RemotePlan:
        """See ``Governor.get_plan``."""
        return plan_from(self._send(self._plan("GET", plan_id, tenant=tenant)))

    def list_plans(self, tenant: str | None = None) -> list[RemotePlan]:
        """See ``Governor.list_plans`` (a tenant's key: its own and the deployment-wide)."""
        answer = self._send(self._plan("GET", tenant=tenant))
        return [plan_from(p) for p in answer["plans"]]

    def delete_plan(self, plan_id: str, *, tenant: str | None = None) -> None:
        """See ``Governor.delete_plan``."""
        self._send(self._plan("DELETE", plan_id, tenant=tenant))

    def assign_plan(
        self, tenant: str, member: str, plan: str, *, usage: str = "carry"
    ) -> RemotePlanAssignment:
        """See ``Governor.assign_plan``."""
        answer = self._send(self._assign_plan(tenant, member, plan, usage))
        return plan_assignment_from(answer)

    def plan_of(self, tenant: str, member: str) -> RemotePlanAssignment | None:
        """See ``Governor.plan_of``: None when the member has no assignment."""
        try:
            return plan_assignment_from(self._send(self._plan_of(tenant, member)))
        except NotFoundError:
            return None

    # exchange rates
    def set_rate(
        self,
        source: str,
        target: str,
        rate: Decimal | str,
        effective_from: datetime | None = None,
    ) -> FxRate:
        """See ``Governor.set_rate`` (admin keys only: rates are deployment-wide)."""
        return FxRate.from_spec(self._send(self._set_rate(source, target, rate, effective_from)))

    def rates(self) -> list[FxRate]:
        """See ``Governor.rates``."""
        return [FxRate.from_spec(r) for r in self._send(Call("GET", "/v1/rates"))["rates"]]

    # credit pools
    def add_grant(
        self,
        pool: str,
        amount: Decimal | int | str,
        *,
        tenant: str | None = None,
        member: str = "",
        kind: str = "purchase",
        priority: int = 0,
        effective_at: datetime | None = None,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
        metadata: Mapping[str, str] | None = None,
        grant_id: str | None = None,
    ) -> tuple[RemoteGrant, bool]:
        """See ``Governor.add_grant``: the grant, and whether this call added it (False:
        the service had added it before under ``idempotency_key`` or ``grant_id``).
        Sent again after a lost answer only under an idempotency key."""
        terms = {"tenant": tenant, "member": member, "kind": kind, "priority": priority,
                 "effective_at": effective_at, "expires_at": expires_at, "id": grant_id,
                 "idempotency_key": idempotency_key, "metadata": metadata}  # fmt: skip
        return self._added(self._send(self._add_grant(pool, amount, terms)))

    def void_grant(
        self, pool: str, grant_id: str, *, tenant: str | None = None, member: str = ""
    ) -> RemoteGrant:
        """See ``Governor.void_grant``."""
        return grant_from(self._send(self._void_grant(pool, grant_id, tenant, member)))

    def pool(self, pool: str, *, tenant: str | None = None, member: str = "") -> RemotePoolStatus:
        """See ``Governor.pool``."""
        return pool_from(self._send(self._pool(pool, tenant, member)))

    def credit_ledger(
        self,
        pool: str,
        *,
        tenant: str | None = None,
        member: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[RemoteCreditEntry]:
        """See ``Governor.credit_ledger``: one page, oldest first, after entry ``after_id``."""
        page = self._send(self._credit_ledger(pool, tenant, member, after_id, limit))
        return [credit_entry_from(e) for e in page["entries"]]

    def resume_topups(self, pool: str, *, tenant: str | None = None, member: str = "") -> bool:
        """See ``Governor.resume_topups``."""
        return bool(self._send(self._resume_topups(pool, tenant, member))["resumed"])

    def topup_status(
        self, pool: str, *, tenant: str | None = None, member: str = ""
    ) -> tuple[str | None, RemoteTopUp | None]:
        """See ``Governor.topup_status``: why auto top-up is not buying (its code), and the
        member's latest top-up; (None, None) for a pool without auto top-up."""
        return topup_standing(self._send(self._pool(pool, tenant, member)))

    # keys
    def create_key(
        self, role: str, tenant: str | None = None, name: str | None = None
    ) -> tuple[RemoteKey, str]:
        """See ``Governor.create_key``: the key and its secret, shown this once."""
        return self._new_key(self._send(self._create_key(role, tenant, name)))

    def list_keys(self, tenant: str | None = None) -> list[RemoteKey]:
        """See ``Governor.list_keys``."""
        return [key_from(k) for k in self._send(self._list("/v1/keys", tenant))["keys"]]

    def revoke_key(self, key_id: str) -> None:
        """See ``Governor.revoke_key``."""
        self._send(self._revoke_key(key_id))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
