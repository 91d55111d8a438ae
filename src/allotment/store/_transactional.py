"""The compound store operations shared by every backend with transactions."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from allotment.core.budgets import Budget, Call
from allotment.core.credits import CreditEntry, Grant
from allotment.core.decisions import BudgetView, Decision
from allotment.core.fx import FxRate
from allotment.core.keys import ApiKey
from allotment.core.ledger import CommitResult, Event, ReservationState
from allotment.core.plans import Assignment, Plan
from allotment.core.plans import Usage as PlanUsage
from allotment.core.topups import TopUp, TopUpStatus
from allotment.errors import StoreError
from allotment.lifecycle import (
    authorize,
    commit,
    credits,
    leases,
    maintenance,
    plans,
    reads,
    record,
    release,
    topups,
)
from allotment.lifecycle import budgets as budget_steps
from allotment.lifecycle.credits import PoolStatus
from allotment.lifecycle.leases import Heartbeat
from allotment.lifecycle.plans import put_config
from allotment.lifecycle.tx import Tx
from allotment.store._batch import Batcher, Item
from allotment.store.base import (
    ArchiveStats,
    AuthorizeRequest,
    CommitRequest,
    EventQuery,
    RebuildStats,
    RecordRequest,
    RepriceRequest,
    RepriceStats,
    UsageQuery,
    UsageRow,
)

__all__ = ["GroupCommitStore", "TransactionalStore"]

T = TypeVar("T")


class TransactionalStore:
    """The compound store operations, over a backend's transaction primitives.

    Subclasses provide ``_transaction()`` (a context manager yielding a
    ``Tx`` that commits on success and rolls back on error), or override
    ``_write`` and ``_read`` themselves (the memory store). Every operation
    is a function of one ``Tx`` run by ``_write`` or ``_read``, so a backend
    whose transactions can fail for reasons of concurrency (PostgreSQL's
    deadlocks and serialization failures) can run it again from the start.
    """

    url: str

    def _transaction(self) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Tx]:
        """A read-only transaction; backends whose readers need not queue behind
        writers (SQLite in WAL mode) override it."""
        return self._transaction()

    def _write(self, operation: Callable[[Tx], T]) -> T:
        """Run ``operation`` in one write transaction."""
        with self._transaction() as tx:
            return operation(tx)

    def _read(self, operation: Callable[[Tx], T]) -> T:
        """Run ``operation`` in one read-only transaction."""
        with self._reading() as tx:
            return operation(tx)

    #: authorize sweeps expired reservations at most this often (store time)
    sweep_every = timedelta(seconds=1)
    _last_sweep: datetime | None = None

    def authorize(self, request: AuthorizeRequest, now: datetime) -> Decision:
        self._sweep_now_and_then(now)
        return self._write(lambda tx: authorize.authorize(tx, request, now))

    def _sweep_due(self, now: datetime) -> bool:
        last = self._last_sweep
        return last is None or not last <= now < last + self.sweep_every

    def _sweep_now_and_then(self, now: datetime) -> None:
        if self._sweep_due(now):
            # Its own transaction: the sweep's locks never widen an authorization's.
            self._last_sweep = now
            self.sweep(now, limit=100)

    def commit(self, request: CommitRequest, now: datetime) -> CommitResult:
        return self._write(lambda tx: commit.commit(tx, request, now))

    def release(
        self, request_id: str, reason: str, now: datetime, tenant: str | None = None
    ) -> ReservationState:
        return self._write(lambda tx: release.release(tx, request_id, reason, now, tenant))

    def record(self, request: RecordRequest, now: datetime) -> CommitResult:
        return self._write(lambda tx: record.record(tx, request, now))

    def record_many(self, requests: Sequence[RecordRequest], now: datetime) -> list[CommitResult]:
        return self._write(lambda tx: [record.record(tx, request, now) for request in requests])

    def sweep(self, now: datetime, limit: int = 1000) -> int:
        return self._write(lambda tx: release.sweep(tx, now, limit))

    def heartbeat(
        self,
        lease_id: str,
        now: datetime,
        ttl_seconds: int | None,
        tenant: str | None,
        default_ttl: int,
    ) -> Heartbeat:
        return self._write(
            lambda tx: leases.heartbeat(tx, lease_id, now, ttl_seconds, tenant, default_ttl)
        )

    def status(
        self, call: Call, now: datetime, plan_from_subject: bool = False
    ) -> list[BudgetView]:
        return self._read(lambda tx: reads.status(tx, call, now, plan_from_subject))

    def usage(self, query: UsageQuery) -> list[UsageRow]:
        return self._read(lambda tx: reads.usage(tx, query))

    def put_budget(self, budget: Budget) -> None:
        self._write(lambda tx: budget_steps.put_budget(tx, budget))

    def put_rate(self, rate: FxRate) -> None:
        self._write(lambda tx: budget_steps.put_rate(tx, rate))

    def create_budget(self, budget: Budget) -> None:
        """Add ``budget``, or raise ConflictError if its id is taken: one transaction."""
        self._write(lambda tx: budget_steps.create_budget(tx, budget))

    def put_config(
        self, rates: Sequence[FxRate], budgets: Sequence[Budget], plans: Sequence[Plan] = ()
    ) -> list[Plan]:
        """Set ``rates``, create or replace ``budgets``, then ``plans``: one transaction."""
        return self._write(lambda tx: put_config(tx, rates, budgets, plans))

    def rates(self) -> list[FxRate]:
        rates = self._read(lambda tx: list(tx.rates()))
        return sorted(rates, key=lambda r: (r.source, r.target, r.effective_from))

    def create_key(self, key: ApiKey, secret_hash: str) -> None:
        self._write(lambda tx: tx.insert_key(key, secret_hash))

    def create_first_key(self, key: ApiKey, secret_hash: str) -> bool:
        """Create ``key`` only if there are no keys at all; whether it was created."""

        def create(tx: Tx) -> bool:
            if tx.keys(None):
                return False
            tx.insert_key(key, secret_hash)
            return True

        return self._write(create)

    def shared_secret(self, name: str) -> str:
        """The secret ``name`` every process on this store shares (made on first use)."""
        return self._write(lambda tx: tx.meta_default(name, secrets.token_hex(32)))

    def find_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        return self._read(lambda tx: tx.key(key_id))

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        return self._read(lambda tx: tx.keys(tenant))

    def update_key(self, key: ApiKey) -> None:
        self._write(lambda tx: tx.update_key(key))

    def find_budget(self, budget_id: str, tenant: str | None = None) -> Budget:
        return self._read(lambda tx: budget_steps.find_budget(tx, budget_id, tenant))

    def list_budgets(self, tenant: str | None = None) -> list[Budget]:
        return self._read(lambda tx: list(tx.all_budgets(tenant)))

    def delete_budget(self, budget: Budget) -> None:
        """Delete ``budget`` (found with ``find_budget``) unless it is protected by now."""
        self._write(lambda tx: budget_steps.delete_budget(tx, budget))

    # plans
    def put_plan(self, plan: Plan) -> Plan:
        return self._write(lambda tx: plans.put_plan(tx, plan))

    def find_plan(self, plan_id: str, tenant: str | None) -> Plan:
        return self._read(lambda tx: plans.find_plan(tx, plan_id, tenant))

    def list_plans(self, tenant: str | None) -> list[Plan]:
        return self._read(lambda tx: list(tx.all_plans(tenant)))

    def delete_plan(self, plan: Plan) -> None:
        self._write(lambda tx: plans.delete_plan(tx, plan))

    def assign_plan(
        self, tenant: str, member: str, plan_id: str, usage: PlanUsage, now: datetime
    ) -> Assignment:
        return self._write(lambda tx: plans.assign(tx, tenant, member, plan_id, usage, now))

    def assignment(self, tenant: str, member: str) -> Assignment | None:
        return self._read(lambda tx: tx.assignment(tenant, member))

    # credit pools
    def find_pool(self, pool_id: str, tenant: str | None = None) -> Budget:
        return self._read(lambda tx: credits.find_pool(tx, pool_id, tenant))

    def add_grant(self, budget: Budget, grant: Grant, now: datetime) -> tuple[Grant, bool]:
        return self._write(lambda tx: credits.add_grant(tx, budget, grant, now))

    def void_grant(self, budget: Budget, member: str, grant_id: str, now: datetime) -> Grant:
        return self._write(lambda tx: credits.void_grant(tx, budget, member, grant_id, now))

    def pool_status(self, budget: Budget, member: str, now: datetime) -> PoolStatus:
        return self._read(lambda tx: credits.pool_status(tx, budget, member, now))

    def credit_entries(
        self, budget: Budget, member: str | None, after_id: int, limit: int
    ) -> list[CreditEntry]:
        return self._read(lambda tx: tx.credit_entries(budget.key, member, after_id, limit))

    def claim_topups(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[tuple[TopUp, Budget | None]]:
        return self._write(lambda tx: topups.claim(tx, now, limit, lease))

    def finish_topup(self, topup_id: str, outcome: topups.Outcome, now: datetime) -> TopUp:
        return self._write(lambda tx: topups.finish(tx, topup_id, outcome, now))

    def resume_topups(self, budget: Budget, member: str, now: datetime) -> bool:
        return self._write(lambda tx: topups.resume(tx, budget, member, now))

    def topup_status(
        self, budget: Budget, member: str, now: datetime
    ) -> tuple[TopUpStatus | None, TopUp | None]:
        return self._read(lambda tx: topups.standing(tx, budget, member, now))

    def rebuild(self) -> RebuildStats:
        return self._write(lambda tx: maintenance.rebuild(tx))

    def reprice(self, request: RepriceRequest, now: datetime) -> RepriceStats:
        """Re-price a time range, one transaction per page of the ledger."""
        stats = RepriceStats()
        cursor: int | None = 0
        while cursor is not None:
            # Fresh figures per attempt, so a retried page is not counted twice.
            page, cursor = self._write(
                partial(_reprice_page, request=request, after=cursor, now=now)
            )
            stats.events += page.events
            stats.changed += page.changed
            stats.delta_micros += page.delta_micros
        return stats

    def archive(
        self, before: datetime, sink: Callable[[Sequence[Event]], None], page_size: int = 5000
    ) -> ArchiveStats:
        """Move every event that occurred before ``before`` out of the ledger.

        Each page is handed to ``sink`` (which must make it durable) before
        the transaction that deletes it, so an event is never only in
        neither place; a failure in between leaves it in both, and the next
        run archives it again (archives are keyed by event id).
        """
        stats = ArchiveStats()
        query = EventQuery(until=before, limit=page_size)
        while page := self._read(lambda tx: list(tx.events(query))):
            sink(page)
            self._write(lambda tx: maintenance.archive_page(tx, page))
            stats.events += len(page)
        stats.request_ids = self._write(lambda tx: maintenance.finish_archive(tx, before))
        return stats

    def cached_budgets(self, tenant: str) -> Sequence[Budget] | None:
        """The budgets last loaded for ``tenant``, without asking the store (None if unknown)."""
        return None

    def held_count(self) -> int:
        return self._read(lambda tx: len(list(tx.held())))

    def counters(self) -> dict[tuple[str, str, int], tuple[int, int]]:
        return self._read(lambda tx: tx.all_counters())

    def events(self, query: EventQuery) -> list[Event]:
        return self._read(lambda tx: list(tx.events(query)))

    def close(self) -> None:
        """Release connections; the default has none."""


def _reprice_page(
    tx: Tx, *, request: RepriceRequest, after: int, now: datetime
) -> tuple[RepriceStats, int | None]:
    stats = RepriceStats()
    return stats, maintenance.reprice_page(tx, request, after, now, stats)


class GroupCommitStore(TransactionalStore):
    """A transactional store whose authorizations and commits share transactions.

    Calls that arrive while a transaction runs queue up, and the next
    transaction runs all of them, one after another, exactly as they would
    run alone (``allotment.store._batch``): the fixed cost of a write
    transaction (taking the write lock, the commit and its WAL or network
    round trip) is paid once a batch, and a hot counter row is written once
    a batch. If any call of a batch fails, nothing of the batch is kept and
    each call runs again alone, so one bad request fails only itself; if the
    store fails (``StoreError``), every call of the batch gets that at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._batcher = Batcher(self._run_batch, on_loop=self._batch_on_loop())
        #: batches of more than one call run, and how many had to re-run call by call
        self.batches = self.batch_fallbacks = 0

    def _batch_on_loop(self) -> Callable[[], bool] | None:
        """When to run coroutines' batches on their event loop (None: never)."""
        return None

    def authorize(self, request: AuthorizeRequest, now: datetime) -> Decision:
        self._sweep_now_and_then(now)
        result: Decision = self._batcher.submit(Item(request, now))
        return result

    def commit(self, request: CommitRequest, now: datetime) -> CommitResult:
        result: CommitResult = self._batcher.submit(Item(request, now))
        return result

    async def authorize_async(self, request: AuthorizeRequest, now: datetime) -> Decision:
        """``authorize`` from an event loop: queued for a batch, no thread of its own."""
        if self._sweep_due(now):
            await asyncio.to_thread(self._sweep_now_and_then, now)
        result: Decision = await self._batcher.submit_async(Item(request, now))
        return result

    async def commit_async(self, request: CommitRequest, now: datetime) -> CommitResult:
        """``commit`` from an event loop (see ``authorize_async``)."""
        result: CommitResult = await self._batcher.submit_async(Item(request, now))
        return result

    def _run_batch(self, items: list[Item]) -> None:
        """Run ``items`` as one transaction; if that fails, each on its own.

        Unless the store itself failed: each call alone would only meet the
        same failure (and, with the database down, wait for it once more).
        """
        if len(items) > 1:
            self.batches += 1
            try:
                results = self._once(items)
            except StoreError as exc:
                for item in items:
                    item.error = _own_copy(exc)
                return
            except Exception:  # a bad call or a conflict: each call run on its own will say
                self.batch_fallbacks += 1
            else:
                for item, result in zip(items, results, strict=True):
                    item.result = result
                return
        for item in items:
            try:
                item.result = self._write(item.run)
            except Exception as exc:  # raised in the caller's thread by the batcher
                item.error = exc

    def _once(self, items: list[Item]) -> list[Any]:
        """``items`` in one write transaction, errors raised as they are."""
        return self._write(lambda tx: [item.run(tx) for item in items])

    def close(self) -> None:
        self._batcher.close()


def _own_copy(error: StoreError) -> StoreError:
    """``error`` for one caller of a failed batch: each raises its own, in its own thread."""
    copy = StoreError(*error.args)
    copy.__cause__ = error.__cause__
    return copy
