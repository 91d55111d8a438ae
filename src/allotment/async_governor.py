"""``AsyncGovernor``: the Governor's methods as coroutines.

The same sync code runs, so the two can never disagree: in a worker thread,
except authorize and commit on SQLite and PostgreSQL, which queue for the
store's next batch without a thread per call. Every signature is written out
(no ``*args`` forwarding), so editors and type checkers see the Governor's.

``AsyncHold`` is the ``async with`` form of ``hold``, shared with
``allotment.client.AsyncClient``: it needs only ``authorize``, ``commit`` and
``release`` coroutines.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar, cast

from allotment.core.budgets import Budget
from allotment.core.credits import CreditEntry, Grant
from allotment.core.decisions import BudgetView, Decision
from allotment.core.fx import FxRate
from allotment.core.keys import ApiKey
from allotment.core.ledger import CommitResult, Event, ReservationState
from allotment.core.plans import Assignment, Plan
from allotment.core.routes import Route
from allotment.core.subjects import Subject
from allotment.core.topups import TopUp, TopUpStatus
from allotment.errors import BudgetExceeded
from allotment.governor import _DEFAULT, Governor, SubjectLike, UsageLike, _Default, _utcnow
from allotment.lifecycle.credits import PoolStatus
from allotment.lifecycle.leases import Heartbeat
from allotment.payments import PaymentGateway
from allotment.pricing.base import Pricer
from allotment.pricing.estimate import EstimateSettings
from allotment.store import Store
from allotment.store.base import (
    ArchiveStats,
    EventQuery,
    RebuildStats,
    RepriceStats,
    UsageRow,
)

if TYPE_CHECKING:
    from allotment.core.decisions import Refusal

__all__ = ["AsyncGovernor", "AsyncHold"]


class AsyncGovernor:
    """``Governor`` with coroutine methods; the arguments are the Governor's."""

    def __init__(
        self,
        store: Store | str = "sqlite:///allotment.db",
        *,
        pricer: Pricer | _Default | None = _DEFAULT,
        currency: str = "USD",
        unknown_model: str = "fallback",
        uncovered: str = "warn",
        estimates: EstimateSettings | None = None,
        clock: Callable[[], datetime] = _utcnow,
        default_ttl: int = 300,
        gateway: PaymentGateway | None = None,
        topup_worker: bool = True,
        plan_from_subject: bool = False,
    ) -> None:
        self.sync = Governor(
            store, pricer=pricer, currency=currency, unknown_model=unknown_model,
            uncovered=uncovered, estimates=estimates, clock=clock, default_ttl=default_ttl,
            gateway=gateway, topup_worker=topup_worker, plan_from_subject=plan_from_subject,
        )  # fmt: skip

    # the call lifecycle
    async def authorize(
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
    ) -> Decision:
        """See ``Governor.authorize`` (batched without a thread per call on SQL stores)."""
        return await self.sync.authorize_async(
            request_id, subject, provider, model, estimate, ttl=ttl, request=request,
            max_duration=max_duration, routes=routes,
        )  # fmt: skip

    async def commit(
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
    ) -> CommitResult:
        """See ``Governor.commit`` (batched without a thread per call on SQL stores)."""
        return await self.sync.commit_async(
            request_id, usage, status=status, reason=reason, provider=provider, model=model,
            subject=subject, tenant=tenant,
        )  # fmt: skip

    async def heartbeat(
        self, lease_id: str, *, ttl: int | None = None, tenant: str | None = None
    ) -> Heartbeat:
        """See ``Governor.heartbeat``."""
        return await asyncio.to_thread(self.sync.heartbeat, lease_id, ttl=ttl, tenant=tenant)

    async def release(
        self, request_id: str, reason: str = "released", *, tenant: str | None = None
    ) -> ReservationState:
        """See ``Governor.release``."""
        return await asyncio.to_thread(self.sync.release, request_id, reason, tenant=tenant)

    async def record(
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
    ) -> CommitResult:
        """See ``Governor.record``."""
        return await asyncio.to_thread(
            self.sync.record, request_id, subject, provider, model, usage,
            status=status, occurred_at=occurred_at, reason=reason,
        )  # fmt: skip

    async def record_many(self, events: Iterable[Mapping[str, Any]]) -> list[CommitResult]:
        """See ``Governor.record_many``."""
        return await asyncio.to_thread(self.sync.record_many, list(events))

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
    ) -> AsyncHold[Decision, CommitResult]:
        """``async with gov.hold(...) as h: ... await h.commit(usage)``; see ``Governor.hold``."""
        return AsyncHold(
            self, subject, provider, model, estimate, request_id=request_id, ttl=ttl,
            request=request,
        )  # fmt: skip

    async def sweep(self) -> int:
        """See ``Governor.sweep``."""
        return await asyncio.to_thread(self.sync.sweep)

    # reading
    async def status(
        self, subject: SubjectLike, provider: str | None = None, model: str | None = None
    ) -> list[BudgetView]:
        """See ``Governor.status``."""
        return await asyncio.to_thread(self.sync.status, subject, provider, model)

    async def usage(
        self,
        tenant: str,
        by: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        order: str | None = None,
        limit: int | None = None,
    ) -> list[UsageRow]:
        """See ``Governor.usage``."""
        return await asyncio.to_thread(
            self.sync.usage, tenant, by, since, until, order=order, limit=limit
        )

    async def events(self, query: EventQuery | None = None) -> list[Event]:
        """See ``Governor.events``."""
        return await asyncio.to_thread(self.sync.events, query)

    # budgets
    async def create_budget(self, budget: Budget | Mapping[str, Any]) -> Budget:
        """See ``Governor.create_budget``."""
        return await asyncio.to_thread(self.sync.create_budget, budget)

    async def set_budget(self, budget: Budget | Mapping[str, Any]) -> Budget:
        """See ``Governor.set_budget``."""
        return await asyncio.to_thread(self.sync.set_budget, budget)

    async def update_budget(
        self,
        budget_id: str,
        changes: Mapping[str, Any] | None = None,
        /,
        *,
        tenant: str | None = None,
        **fields: Any,
    ) -> Budget:
        """See ``Governor.update_budget`` (the changes are spec fields, human units)."""
        update = partial(self.sync.update_budget, budget_id, changes, tenant=tenant, **fields)
        return await asyncio.to_thread(update)

    async def get_budget(self, budget_id: str, *, tenant: str | None = None) -> Budget:
        """See ``Governor.get_budget``."""
        return await asyncio.to_thread(self.sync.get_budget, budget_id, tenant=tenant)

    async def list_budgets(self, tenant: str | None = None) -> list[Budget]:
        """See ``Governor.list_budgets``."""
        return await asyncio.to_thread(self.sync.list_budgets, tenant)

    async def delete_budget(self, budget_id: str, *, tenant: str | None = None) -> None:
        """See ``Governor.delete_budget``."""
        await asyncio.to_thread(self.sync.delete_budget, budget_id, tenant=tenant)

    async def load_budgets(self, path: str | Path) -> list[Budget]:
        """See ``Governor.load_budgets``."""
        return await asyncio.to_thread(self.sync.load_budgets, path)

    async def apply_config(
        self,
        budgets: Sequence[Budget | Mapping[str, Any]],
        rates: Sequence[FxRate | Mapping[str, Any]] = (),
        plans: Sequence[Plan | Mapping[str, Any]] = (),
    ) -> list[Budget]:
        """See ``Governor.apply_config``."""
        return await asyncio.to_thread(self.sync.apply_config, budgets, rates, plans)

    # plans
    async def set_plan(self, plan: Plan | Mapping[str, Any]) -> Plan:
        """See ``Governor.set_plan``."""
        return await asyncio.to_thread(self.sync.set_plan, plan)

    async def get_plan(self, plan_id: str, *, tenant: str | None = None) -> Plan:
        """See ``Governor.get_plan``."""
        return await asyncio.to_thread(self.sync.get_plan, plan_id, tenant=tenant)

    async def list_plans(self, tenant: str | None = None) -> list[Plan]:
        """See ``Governor.list_plans``."""
        return await asyncio.to_thread(self.sync.list_plans, tenant)

    async def delete_plan(self, plan_id: str, *, tenant: str | None = None) -> None:
        """See ``Governor.delete_plan``."""
        await asyncio.to_thread(self.sync.delete_plan, plan_id, tenant=tenant)

    async def assign_plan(
        self, tenant: str, member: str, plan: str, *, usage: str = "carry"
    ) -> Assignment:
        """See ``Governor.assign_plan``."""
        assign = partial(self.sync.assign_plan, tenant, member, plan, usage=usage)
        return await asyncio.to_thread(assign)

    async def plan_of(self, tenant: str, member: str) -> Assignment | None:
        """See ``Governor.plan_of``."""
        return await asyncio.to_thread(self.sync.plan_of, tenant, member)

    # credit pools
    async def add_grant(
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
    ) -> tuple[Grant, bool]:
        """See ``Governor.add_grant``."""
        add = partial(
            self.sync.add_grant, pool, amount, tenant=tenant, member=member, kind=kind,
            priority=priority, effective_at=effective_at, expires_at=expires_at,
            idempotency_key=idempotency_key, metadata=metadata, grant_id=grant_id,
        )  # fmt: skip
        return await asyncio.to_thread(add)

    async def void_grant(
        self, pool: str, grant_id: str, *, tenant: str | None = None, member: str = ""
    ) -> Grant:
        """See ``Governor.void_grant``."""
        void = partial(self.sync.void_grant, pool, grant_id, tenant=tenant, member=member)
        return await asyncio.to_thread(void)

    async def get_pool(self, pool: str, *, tenant: str | None = None) -> Budget:
        """See ``Governor.get_pool``."""
        return await asyncio.to_thread(self.sync.get_pool, pool, tenant=tenant)

    async def pool(self, pool: str, *, tenant: str | None = None, member: str = "") -> PoolStatus:
        """See ``Governor.pool``."""
        return await asyncio.to_thread(self.sync.pool, pool, tenant=tenant, member=member)

    async def credit_ledger(
        self,
        pool: str,
        *,
        tenant: str | None = None,
        member: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[CreditEntry]:
        """See ``Governor.credit_ledger``."""
        page = partial(
            self.sync.credit_ledger, pool, tenant=tenant, member=member, after_id=after_id,
            limit=limit,
        )  # fmt: skip
        return await asyncio.to_thread(page)

    async def run_topups(self, limit: int = 10) -> list[TopUp]:
        """See ``Governor.run_topups``."""
        return await asyncio.to_thread(self.sync.run_topups, limit)

    async def resume_topups(
        self, pool: str, *, tenant: str | None = None, member: str = ""
    ) -> bool:
        """See ``Governor.resume_topups``."""
        resume = partial(self.sync.resume_topups, pool, tenant=tenant, member=member)
        return await asyncio.to_thread(resume)

    async def topup_status(
        self, pool: str, *, tenant: str | None = None, member: str = ""
    ) -> tuple[TopUpStatus | None, TopUp | None]:
        """See ``Governor.topup_status``."""
        status = partial(self.sync.topup_status, pool, tenant=tenant, member=member)
        return await asyncio.to_thread(status)

    # the ledger
    async def reprice(
        self,
        since: datetime,
        until: datetime,
        *,
        model: str | None = None,
        tenant: str | None = None,
    ) -> RepriceStats:
        """See ``Governor.reprice``."""
        return await asyncio.to_thread(self.sync.reprice, since, until, model=model, tenant=tenant)

    async def rebuild(self) -> RebuildStats:
        """See ``Governor.rebuild``."""
        return await asyncio.to_thread(self.sync.rebuild)

    async def archive(self, before: datetime, path: str | Path) -> ArchiveStats:
        """See ``Governor.archive``."""
        return await asyncio.to_thread(self.sync.archive, before, path)

    # keys and rates
    async def create_key(
        self,
        role: str,
        tenant: str | None = None,
        name: str | None = None,
        secret: str | None = None,
    ) -> tuple[ApiKey, str]:
        """See ``Governor.create_key``."""
        return await asyncio.to_thread(self.sync.create_key, role, tenant, name, secret)

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """See ``Governor.list_keys``."""
        return await asyncio.to_thread(self.sync.list_keys, tenant)

    async def revoke_key(self, key_id: str, *, tenant: str | None = None) -> ApiKey:
        """See ``Governor.revoke_key``."""
        return await asyncio.to_thread(self.sync.revoke_key, key_id, tenant=tenant)

    async def set_rate(
        self,
        source: str,
        target: str,
        rate: Decimal | str,
        effective_from: datetime | None = None,
    ) -> FxRate:
        """See ``Governor.set_rate``."""
        return await asyncio.to_thread(self.sync.set_rate, source, target, rate, effective_from)

    async def rates(self) -> list[FxRate]:
        """See ``Governor.rates``."""
        return await asyncio.to_thread(self.sync.rates)

    async def close(self) -> None:
        """Close the store."""
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --- hold ---------------------------------------------------------------------------------


class _Decided(Protocol):
    """What ``AsyncHold`` reads of a decision (the Governor's or the service's)."""

    @property
    def allowed(self) -> bool: ...

    @property
    def refusals(self) -> Sequence[Refusal] | Sequence[Any]: ...


D = TypeVar("D", bound=_Decided)
R = TypeVar("R")
D_co = TypeVar("D_co", bound=_Decided, covariant=True)
R_co = TypeVar("R_co", covariant=True)


class _Lifecycle(Protocol[D_co, R_co]):
    """The three coroutines a hold needs: ``AsyncGovernor``'s or ``AsyncClient``'s."""

    async def authorize(
        self,
        request_id: str,
        subject: SubjectLike,
        provider: str,
        model: str,
        estimate: UsageLike | None = ...,
        *,
        ttl: int | None = ...,
        request: Mapping[str, Any] | None = ...,
    ) -> D_co: ...

    async def commit(
        self,
        request_id: str,
        usage: UsageLike,
        *,
        status: str = ...,
        reason: str | None = ...,
        provider: str | None = ...,
        model: str | None = ...,
        subject: SubjectLike | None = ...,
        tenant: str | None = ...,
    ) -> R_co: ...

    async def release(
        self, request_id: str, reason: str = ..., *, tenant: str | None = ...
    ) -> object: ...


class AsyncHold(Generic[D, R]):
    """An authorization held by ``async with``: authorizes on enter, releases on a bad exit.

    ``async with gov.hold(subject, provider, model, estimate) as h:`` raises
    ``BudgetExceeded`` when refused; inside, ``await h.commit(usage)``.
    Leaving the block without committing (by an exception or otherwise)
    releases the reservation.
    """

    def __init__(
        self,
        governor: _Lifecycle[D, R],
        subject: SubjectLike,
        provider: str,
        model: str,
        estimate: UsageLike | None = None,
        *,
        request_id: str | None = None,
        ttl: int | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> None:
        self.governor = governor
        self.request_id = request_id or uuid.uuid4().hex
        self._call = (subject, provider, model, estimate, ttl, request)
        #: whose request id it is: another tenant may use the same one
        self.tenant = _tenant_of(subject)
        self._decision: D | None = None
        self.result: R | None = None

    @property
    def decision(self) -> D:
        """The granted decision (inside the block)."""
        if self._decision is None:
            raise RuntimeError("use the hold in `async with` first")
        return self._decision

    async def __aenter__(self) -> Self:
        subject, provider, model, estimate, ttl, request = self._call
        decision = await self.governor.authorize(
            self.request_id, subject, provider, model, estimate, ttl=ttl, request=request
        )
        if not decision.allowed:
            raise BudgetExceeded(cast(Decision, decision))
        self._decision = decision
        return self

    async def commit(
        self,
        usage: UsageLike,
        *,
        status: str = "success",
        reason: str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> R:
        """Commit the call's actual usage (see ``commit``)."""
        self.result = await self.governor.commit(
            self.request_id, usage, status=status, reason=reason, provider=provider,
            model=model, tenant=self.tenant,
        )  # fmt: skip
        return self.result

    async def release(self, reason: str = "released") -> None:
        """Give the reservation back without using it."""
        await self.governor.release(self.request_id, reason, tenant=self.tenant)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._decision is not None and self.result is None:
            await self.release("exception" if exc_type is not None else "not_committed")


def _tenant_of(subject: SubjectLike) -> str | None:
    if isinstance(subject, Subject):
        return subject.tenant
    tenant = subject.get("tenant") if isinstance(subject, Mapping) else None
    return tenant if isinstance(tenant, str) else None
