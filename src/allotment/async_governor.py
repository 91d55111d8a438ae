"""``AsyncGovernor``: the Governor's methods as coroutines.

The same sync code runs, so the two can never disagree: in a worker thread,
except authorize and commit on SQLite and PostgreSQL, which queue for the
store's next batch without a thread per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from allotment.core.budgets import Budget
from allotment.core.decisions import BudgetView, Decision
from allotment.core.ledger import CommitResult, ReservationState
from allotment.governor import Governor, Hold, UsageLike
from allotment.store import Store
from allotment.store.base import UsageRow

__all__ = ["AsyncGovernor", "AsyncHold"]


class AsyncGovernor:
    """``Governor`` with coroutine methods; the same code runs in a worker thread."""

    def __init__(self, store: Store | str = "sqlite:///allotment.db", **kwargs: Any) -> None:
        self.sync = Governor(store, **kwargs)

    async def authorize(self, *args: Any, **kwargs: Any) -> Decision:
        """See ``Governor.authorize`` (batched without a thread per call on SQL stores)."""
        return await self.sync.authorize_async(*args, **kwargs)

    async def commit(self, *args: Any, **kwargs: Any) -> CommitResult:
        """See ``Governor.commit`` (batched without a thread per call on SQL stores)."""
        return await self.sync.commit_async(*args, **kwargs)

    async def release(self, *args: Any, **kwargs: Any) -> ReservationState:
        """See ``Governor.release``."""
        return await asyncio.to_thread(self.sync.release, *args, **kwargs)

    async def record(self, *args: Any, **kwargs: Any) -> CommitResult:
        """See ``Governor.record``."""
        return await asyncio.to_thread(self.sync.record, *args, **kwargs)

    async def status(self, *args: Any, **kwargs: Any) -> list[BudgetView]:
        """See ``Governor.status``."""
        return await asyncio.to_thread(self.sync.status, *args, **kwargs)

    async def usage(self, *args: Any, **kwargs: Any) -> list[UsageRow]:
        """See ``Governor.usage``."""
        return await asyncio.to_thread(self.sync.usage, *args, **kwargs)

    async def sweep(self) -> int:
        """See ``Governor.sweep``."""
        return await asyncio.to_thread(self.sync.sweep)

    async def create_budget(self, budget: Budget | Mapping[str, Any]) -> Budget:
        """See ``Governor.create_budget``."""
        return await asyncio.to_thread(self.sync.create_budget, budget)

    async def set_budget(self, budget: Budget | Mapping[str, Any]) -> Budget:
        """See ``Governor.set_budget``."""
        return await asyncio.to_thread(self.sync.set_budget, budget)

    async def update_budget(self, budget_id: str, **changes: Any) -> Budget:
        """See ``Governor.update_budget``."""
        return await asyncio.to_thread(lambda: self.sync.update_budget(budget_id, **changes))

    async def list_budgets(self, tenant: str | None = None) -> list[Budget]:
        """See ``Governor.list_budgets``."""
        return await asyncio.to_thread(self.sync.list_budgets, tenant)

    async def delete_budget(self, budget_id: str) -> None:
        """See ``Governor.delete_budget``."""
        await asyncio.to_thread(self.sync.delete_budget, budget_id)

    def hold(self, *args: Any, **kwargs: Any) -> AsyncHold:
        """``async with gov.hold(...) as h: ... await h.commit(usage)``."""
        return AsyncHold(self, args, kwargs)

    async def close(self) -> None:
        """Close the store."""
        await asyncio.to_thread(self.sync.close)


class AsyncHold:
    """The async form of ``Hold``: authorizes on enter, releases on a bad exit."""

    def __init__(self, governor: AsyncGovernor, args: Iterable[Any], kwargs: dict[str, Any]):
        self._governor = governor
        self._args = tuple(args)
        self._kwargs = kwargs
        self._hold: Hold | None = None

    async def __aenter__(self) -> Self:
        sync = self._governor.sync
        self._hold = await asyncio.to_thread(lambda: sync.hold(*self._args, **self._kwargs))
        return self

    @property
    def decision(self) -> Decision:
        """The authorization decision."""
        assert self._hold is not None
        return self._hold.decision

    async def commit(self, usage: UsageLike, **kwargs: Any) -> CommitResult:
        """Commit the call's actual usage."""
        assert self._hold is not None
        hold = self._hold
        return await asyncio.to_thread(lambda: hold.commit(usage, **kwargs))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._hold is not None:
            await asyncio.to_thread(self._hold.__exit__, exc_type, exc, tb)
