"""The compound store operations shared by every backend with transactions."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from allotment.core.budgets import Budget, Call
from allotment.core.decisions import BudgetView, Decision
from allotment.core.fx import FxRate
from allotment.core.keys import ApiKey
from allotment.core.ledger import CommitResult, Event, ReservationState
from allotment.core.usage import Meter
from allotment.store import _ops
from allotment.store._ops import Tx
from allotment.store.base import (
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

__all__ = ["TransactionalStore"]


class TransactionalStore:
    """The compound store operations, over a backend's transaction primitives.

    Subclasses provide ``_transaction()`` (a context manager yielding a
    ``Tx`` that commits on success and rolls back on error) and the read
    queries that are naturally backend-specific.
    """

    url: str

    def _transaction(self) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Tx]:
        """A read-only transaction; backends whose readers need not queue behind
        writers (SQLite in WAL mode) override it."""
        return self._transaction()

    #: authorize sweeps expired reservations at most this often (store time)
    sweep_every = timedelta(seconds=1)
    _last_sweep: datetime | None = None

    def authorize(self, request: AuthorizeRequest, now: datetime) -> Decision:
        with self._transaction() as tx:
            last = self._last_sweep
            if last is None or not last <= now < last + self.sweep_every:
                _ops.sweep(tx, now, limit=100)
                self._last_sweep = now
            return _ops.authorize(tx, request, now)

    def commit(self, request: CommitRequest, now: datetime) -> CommitResult:
        with self._transaction() as tx:
            return _ops.commit(tx, request, now)

    def release(
        self, request_id: str, reason: str, now: datetime, tenant: str | None = None
    ) -> ReservationState:
        with self._transaction() as tx:
            return _ops.release(tx, request_id, reason, now, tenant)

    def record(self, request: RecordRequest, now: datetime) -> CommitResult:
        with self._transaction() as tx:
            return _ops.record(tx, request, now)

    def record_many(self, requests: Sequence[RecordRequest], now: datetime) -> list[CommitResult]:
        with self._transaction() as tx:
            return [_ops.record(tx, request, now) for request in requests]

    def sweep(self, now: datetime, limit: int = 1000) -> int:
        with self._transaction() as tx:
            return _ops.sweep(tx, now, limit)

    def status(self, call: Call, now: datetime) -> list[BudgetView]:
        with self._reading() as tx:
            return _ops.status(tx, call, now)

    def usage(self, query: UsageQuery) -> list[UsageRow]:
        with self._reading() as tx:
            return _ops.usage(tx, query)

    def put_budget(self, budget: Budget) -> None:
        with self._transaction() as tx:
            previous = tx.budget(budget.id)
            tx.put_budget(budget)
            if previous is None or _counts_differently(previous, budget):
                _ops.rebuild_counters(tx, [budget])

    def put_rate(self, rate: FxRate) -> None:
        with self._transaction() as tx:
            tx.put_rate(rate)
            # A rate can reach back in time: recount the cost budgets it converts for.
            touched = [
                b for b in tx.all_budgets(None)
                if b.meter is Meter.COST and b.currency in (rate.source, rate.target)
            ]  # fmt: skip
            if touched:
                _ops.rebuild_counters(tx, touched)

    def rates(self) -> list[FxRate]:
        with self._reading() as tx:
            return sorted(tx.rates(), key=lambda r: (r.source, r.target, r.effective_from))

    def create_key(self, key: ApiKey, secret_hash: str) -> None:
        with self._transaction() as tx:
            tx.insert_key(key, secret_hash)

    def find_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        with self._reading() as tx:
            return tx.key(key_id)

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        with self._reading() as tx:
            return tx.keys(tenant)

    def update_key(self, key: ApiKey) -> None:
        with self._transaction() as tx:
            tx.update_key(key)

    def get_budget(self, budget_id: str) -> Budget:
        with self._reading() as tx:
            return _ops.get_budget(tx, budget_id)

    def list_budgets(self, tenant: str | None = None) -> list[Budget]:
        with self._reading() as tx:
            return list(tx.all_budgets(tenant))

    def delete_budget(self, budget_id: str) -> None:
        with self._transaction() as tx:
            _ops.get_budget(tx, budget_id)
            tx.delete_budget(budget_id)

    def rebuild(self) -> RebuildStats:
        with self._transaction() as tx:
            return _ops.rebuild(tx)

    def reprice(self, request: RepriceRequest, now: datetime) -> RepriceStats:
        """Re-price a time range, one transaction per page of the ledger."""
        stats = RepriceStats()
        cursor: int | None = 0
        while cursor is not None:
            with self._transaction() as tx:
                cursor = _ops.reprice_page(tx, request, cursor, now, stats)
        return stats

    def cached_budgets(self, tenant: str) -> Sequence[Budget] | None:
        """The budgets last loaded for ``tenant``, without asking the store (None if unknown)."""
        return None

    def held_count(self) -> int:
        with self._reading() as tx:
            return len(list(tx.held()))

    def counters(self) -> dict[tuple[str, str, int], tuple[int, int]]:
        with self._reading() as tx:
            return tx.all_counters()

    def events(self, query: EventQuery) -> list[Event]:
        with self._reading() as tx:
            return list(tx.events(query))

    def close(self) -> None:
        """Release connections; the default has none."""


def _counts_differently(old: Budget, new: Budget) -> bool:
    """Whether a budget change alters which usage lands on which counter."""
    return (old.meter, old.window, old.match, old.exclude, old.per, old.tenant) != (
        new.meter,
        new.window,
        new.match,
        new.exclude,
        new.per,
        new.tenant,
    )
