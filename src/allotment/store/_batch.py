"""Group commit: many authorizations and commits in one transaction, without deadlocks.

A tenant-wide budget is one counter row that every call locks until its
transaction commits, fsync included: one at a time, the row caps throughput
at a few thousand transactions a second however many instances run. The
``Batcher`` lets calls that arrive together share one transaction: one
thread (the leader) runs the whole queue while the others wait for their
answers. SQLite, whose single write lock makes every transaction such a
row, batches the same way (its batch is simply one ``BEGIN IMMEDIATE``
transaction); the rest of this module is what PostgreSQL needs on top.

On PostgreSQL one transaction holding many calls' locks must still never
deadlock with another, so a batch takes all its locks up front, in the
global order every writer uses: first the reservations it will touch (one
statement, sorted by request id and tenant), then every counter its calls
will read or charge (one statement, sorted by key). The calls then run one
after another, exactly as they would alone, against a ``BatchTx`` that
serves those rows from memory and buffers every write; the writes go out at
the end, counters before rollups, each in sorted order. Inside a batch,
later calls see earlier ones, so the answers are the same as if the calls
had run in sequence.

If any call fails, nothing of the batch is kept and every call runs again on
its own transaction, so one bad request never fails its neighbours. A failure
of the store itself (``StoreError``: the database unreachable, the disk
full) is every call's answer at once: run alone, each would only meet it again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from allotment.core.budgets import Budget
from allotment.core.credits import CreditEntry, Grant, counter_keys
from allotment.core.engine import (
    Applied,
    Buckets,
    Counter,
    bucket_total,
    counted_range,
    occupied,
)
from allotment.core.fx import Rates
from allotment.core.ledger import Event, Reservation
from allotment.core.plans import Assignment, Plan
from allotment.core.topups import TopUp
from allotment.lifecycle import authorize, commit
from allotment.lifecycle.authorize import AuthorizeRequest
from allotment.lifecycle.commit import CommitRequest
from allotment.lifecycle.tx import CallTx, Delta, Key, PlannedTx, RollupKey, Slot

__all__ = ["BatchTx", "Batcher", "Item", "lock_plan"]

_running_loop = asyncio._get_running_loop  # None outside a loop, and cheap


class BatchableTx(CallTx, Protocol):
    """The extra primitives a backend offers for batches."""

    def open_batch(
        self, request_ids: Sequence[str], events: int
    ) -> tuple[dict[str, list[Reservation]], list[int]]: ...
    def lock_counters(self, keys: Sequence[Key]) -> dict[Key, tuple[int, int]]: ...
    def insert_events(self, events: Sequence[Event]) -> None: ...
    def upsert_reservations(
        self, inserts: Sequence[Reservation], updates: Sequence[Reservation]
    ) -> None: ...
    def bump_rollups(self, rows: Sequence[tuple[RollupKey, Sequence[int]]]) -> None: ...
    def window_buckets(
        self, budget_key: str, member: str, first: int, last: int, skip: Sequence[int]
    ) -> Buckets: ...


@dataclass(slots=True)
class Item:
    """One call waiting in the queue, and its answer once run.

    A thread that queued behind another leader waits on ``wake``; a
    coroutine awaits ``future`` on ``loop``. A thread that leads its own call,
    and a coroutine, have no ``wake``: an Event is a lock and a condition to
    allocate.
    """

    request: AuthorizeRequest | CommitRequest
    now: datetime
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    wake: threading.Event | None = None
    future: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def run(self, tx: CallTx) -> Any:
        """The call's step, in ``tx``."""
        if isinstance(self.request, AuthorizeRequest):
            return authorize.authorize(tx, self.request, self.now)
        return commit.commit(tx, self.request, self.now)

    def footprint(self, tx: PlannedTx, found: Sequence[Reservation]) -> set[Key]:
        """The counters ``run`` will read or charge: its step's own footprint, given
        the reservations under its request id."""
        if isinstance(self.request, AuthorizeRequest):
            return authorize.footprint(tx, self.request, self.now)
        return commit.footprint(tx, self.request, self.now, found)

    def answer(self) -> None:
        """Hand the result (or error) to whoever waits for it."""
        self.done = True
        if self.loop is None:
            cast(threading.Event, self.wake).set()
        elif _running_loop() is self.loop:
            self._settle()  # led on the caller's own loop: no wake-up needed
        else:
            self.loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        if self.future is None or self.future.done():
            return  # the caller went away; the call itself stands
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


@dataclass(slots=True)
class Batcher:
    """Queue calls; one leader at a time runs what is queued as one batch.

    A thread that calls ``submit`` leads itself when no batch is running, or
    sleeps on its own event until it is woken once: with its answer, or to
    lead the next batch. Coroutines (``submit_async``) never lead: a batch
    thread of the batcher's own drains the queue for them, so an event loop
    can have many calls in flight without a thread per call.

    ``on_loop`` (a store whose transactions are short and local: SQLite)
    says, each time a batch is due, whether to run it on the coroutines'
    event loop instead, once per loop iteration: every call that arrived in
    one iteration shares a transaction, with no thread hand-off and no second
    thread contending for the GIL. It says no while another writer holds the
    store: then the batch thread waits for it, not the loop.
    """

    run_batch: Callable[[list[Item]], None]
    max_size: int = 64
    on_loop: Callable[[], bool] | None = None
    _queue: list[Item] = field(default_factory=list)
    _busy: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _drainer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="allotment-batch")
    )

    def submit(self, item: Item) -> Any:
        with self._lock:
            lead = not self._busy
            if not lead:  # only a waiter needs an Event (a lock and a condition to allocate)
                item.wake = threading.Event()
            self._queue.append(item)
            self._busy = True
        if item.wake is not None:
            item.wake.wait()
        if not item.done:
            self._lead(until=item)
        if item.error is not None:
            raise item.error
        return item.result

    async def submit_async(self, item: Item) -> Any:
        item.loop = asyncio.get_running_loop()
        item.future = item.loop.create_future()
        with self._lock:
            self._queue.append(item)
            start = not self._busy
            self._busy = True
        if start:
            self._start(item.loop)
        return await item.future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have the queue drained for a coroutine: on its loop, or by the batch thread."""
        if self.on_loop is not None:
            loop.call_soon_threadsafe(self._lead_on_loop)
        else:
            self._drainer.submit(self._lead)

    def _lead_on_loop(self) -> None:
        # Asked when the batch is about to run, not when it was scheduled: another
        # writer may have taken the store in between.
        if self.on_loop is not None and self.on_loop():
            self._lead()
        else:
            self._drainer.submit(self._lead)

    def _lead(self, until: Item | None = None) -> None:
        """Run batches until ``until`` is answered (or the queue is empty), then hand over."""
        while until is None or not until.done:
            with self._lock:
                batch = self._queue[: self.max_size]
                del self._queue[: self.max_size]
            if not batch:
                break
            try:
                self.run_batch(batch)
            except BaseException as exc:  # answer every caller, and keep the queue moving
                for unanswered in batch:
                    unanswered.error = unanswered.error or exc
            for done in batch:
                if done is until:
                    done.done = True
                else:
                    done.answer()
        with self._lock:
            successor = self._queue[0] if self._queue else None
            self._busy = successor is not None
        if successor is None:
            return
        if successor.loop is None:
            cast(threading.Event, successor.wake).set()  # not done: it wakes up to lead
        else:
            self._start(successor.loop)

    def close(self) -> None:
        self._drainer.shutdown(wait=True)


def lock_plan(
    tx: PlannedTx, items: Sequence[Item], reservations: dict[str, list[Reservation]]
) -> set[Key]:
    """Every counter the calls will read or charge, as far as can be known before running them.

    A call that needs one more (a replay, a commit for an unknown request
    id) still works: the ``BatchTx`` locks it on demand, outside the global
    order, and in the rare case that deadlocks the batch re-runs call by call.
    """
    keys: set[Key] = set()
    for item in items:
        keys |= item.footprint(tx, reservations.get(item.request.request_id, []))
    return keys


class BatchTx:
    """A ``CallTx`` over locked rows held in memory, whose writes go out at ``flush``.

    It offers exactly what the call lifecycle uses (``allotment.lifecycle.tx.CallTx``),
    each method written out: a primitive the steps start to use fails the type
    check here until the batch buffers it or passes it through on purpose.
    """

    def __init__(self, inner: BatchableTx, items: Sequence[Item]) -> None:
        self._inner = inner
        ids = sorted({item.request.request_id for item in items})
        commits = sum(isinstance(item.request, CommitRequest) for item in items)
        # Begins the transaction, and reads the config version on the way.
        locked, self._event_ids = inner.open_batch(ids, commits)
        #: every tenant's reservations under each request id this batch has read
        self._reservations: dict[str, list[Reservation]] = {i: [] for i in ids}
        self._reservations.update(locked)
        # Counters last: a hot budget's row is held from here to COMMIT, as briefly as can be.
        planned = sorted(lock_plan(inner, items, self._reservations))
        self._counters = {k: list(v) for k, v in inner.lock_counters(planned).items()}
        self._pending: dict[Key, list[int]] = {}
        #: rolling windows' buckets this batch does not hold, summed once: by
        #: (budget key, member, first bucket)
        self._others: dict[tuple[str, str, int], Buckets] = {}
        self._inserts: dict[tuple[str, str], Reservation] = {}
        self._updates: dict[tuple[str, str], Reservation] = {}
        self._events: dict[int, Event] = {}
        self._rollups: dict[RollupKey, list[int]] = {}

    # configuration: read as is (the batch read its version when it began)
    def budgets_for(self, tenant: str) -> Sequence[Budget]:
        return self._inner.budgets_for(tenant)

    def plans_for(self, tenant: str) -> Sequence[Plan]:
        return self._inner.plans_for(tenant)

    def rates(self) -> Rates:
        return self._inner.rates()

    # plan assignments, passed through: not configuration, read (and written) per call
    def assignment(self, tenant: str, member: str) -> Assignment | None:
        return self._inner.assignment(tenant, member)

    def put_assignment(self, assignment: Assignment) -> None:
        self._inner.put_assignment(assignment)

    # rolling windows' buckets: as ``read`` counts them (see ``_window``)
    def buckets(self, hit: Applied) -> list[tuple[int, int]]:
        return occupied(self._window(hit))

    # leases' slots: passed through, written in the batch's transaction as they come
    # (rows of their own, which no other write of the batch touches)
    def insert_slots(self, slots: Sequence[Slot]) -> None:
        self._inner.insert_slots(slots)

    def drop_slots(self, tenant: str, request_id: str) -> None:
        self._inner.drop_slots(tenant, request_id)

    def extend_slots(self, tenant: str, request_id: str, expires_at: datetime) -> None:
        self._inner.extend_slots(tenant, request_id, expires_at)

    def soonest_slot(self, budget_key: str, member: str) -> datetime | None:
        return self._inner.soonest_slot(budget_key, member)

    def expired_slots(
        self, budget_key: str, member: str, now: datetime, limit: int
    ) -> list[tuple[str, str]]:
        return self._inner.expired_slots(budget_key, member, now, limit)

    # counters
    def read(self, applied: Sequence[Applied]) -> list[Counter]:
        out = []
        for hit in applied:
            key = (hit.budget.key, hit.member, hit.span.bucket)
            if key not in self._counters:
                # Not planned: ask the database (and lock), this batch's writes applied first.
                self._flush_counters()
                [counter] = self._inner.read([hit])
                self._counters[key] = [counter.used, counter.reserved]
                if hit.span.first_bucket < hit.span.bucket:
                    out.append(bucket_total(self._window(hit)))
                else:
                    out.append(counter)
                continue
            if hit.span.first_bucket < hit.span.bucket:
                out.append(bucket_total(self._window(hit)))
                continue
            used, reserved = self._counters[key]
            out.append(Counter(used, reserved))
        return out

    def _window(self, hit: Applied) -> Buckets:
        """A rolling window's buckets: those this batch holds locked (the current one,
        under the window's anchor, which it holds too), as they stand with its writes,
        and the others as the database has them, read once per batch.

        Asking the database for the whole window on each call (and flushing this
        batch's writes first) cost two round trips per call with the hot rows locked:
        0.45 against 0.82 of a day budget's pairs/s through two instances (bench.limits).
        """
        budget_key, member = hit.budget.key, hit.member
        first, last = counted_range(hit.span)
        held = [k for k in self._counters if k[0] == budget_key and k[1] == member
                and first <= k[2] <= last]  # fmt: skip
        others = self._others.get((budget_key, member, first))
        if others is None:
            skip = [k[2] for k in held]
            others = self._inner.window_buckets(budget_key, member, first, last, skip)
            self._others[budget_key, member, first] = others
        window = dict(others)
        for key in held:
            used, reserved = self._counters[key]
            window[key[2]] = (used, reserved)
        for (b, m, bucket), (u, r) in self._pending.items():
            if b == budget_key and m == member and first <= bucket <= last:
                if (b, m, bucket) not in self._counters:  # unlocked, not yet written
                    used, reserved = window.get(bucket, (0, 0))
                    window[bucket] = (used + u, reserved + r)
        return window

    def read_keys(self, keys: Sequence[Key]) -> list[Counter]:
        missing = [key for key in keys if key not in self._counters]
        if missing:
            # Not locked yet: read (and lock) them with this batch's writes so far applied.
            self._flush_counters()
            for key, counter in zip(missing, self._inner.read_keys(missing), strict=True):
                self._counters[key] = [counter.used, counter.reserved]
        return [Counter(*self._counters[key]) for key in keys]

    def add(self, deltas: Sequence[Delta]) -> None:
        for budget_key, member, bucket, used, reserved in deltas:
            key = (budget_key, member, bucket)
            row = self._counters.get(key)
            if row is not None:
                row[0] += used
                row[1] += reserved
            pending = self._pending.setdefault(key, [0, 0])
            pending[0] += used
            pending[1] += reserved

    def _flush_counters(self) -> None:
        if self._pending:
            self._inner.add([(*k, u, r) for k, (u, r) in sorted(self._pending.items())])
            self._pending.clear()
        # Read again, after the writes and with the rows locked since left out.
        self._others.clear()

    # credit pools, passed through: written in the batch's transaction, undone if it fails
    def grants(self, pool: str, member: str) -> list[Grant]:
        return self._inner.grants(pool, member)

    def held_grants(self, pool: str, member: str) -> tuple[list[Grant], list[Counter], Counter]:
        # The grants from the database, their counters from this batch (its writes so far)
        grants = self._inner.grants(pool, member)
        *held, debt = self.read_keys(counter_keys(pool, member, grants))
        return grants, held, debt

    def close_grant(self, pool: str, member: str, grant_id: str) -> None:
        self._inner.close_grant(pool, member, grant_id)

    def insert_grant(self, grant: Grant) -> Grant:
        return self._inner.insert_grant(grant)

    def append_credits(self, entries: Sequence[CreditEntry]) -> None:
        self._inner.append_credits(entries)

    # auto top-ups, passed through as grants are: the pending slot is the database's
    def latest_topup(self, pool: str, member: str) -> TopUp | None:
        return self._inner.latest_topup(pool, member)

    def start_topup(self, topup: TopUp) -> bool:
        return self._inner.start_topup(topup)

    def drop_topup(self, topup: TopUp) -> None:
        self._inner.drop_topup(topup)

    # reservations
    def reservations(self, request_id: str) -> list[Reservation]:
        found = self._reservations.get(request_id)
        if found is None:
            found = self._reservations[request_id] = self._inner.reservations(request_id)
        return list(found)

    def _keep(self, reservation: Reservation) -> tuple[str, str]:
        key = (reservation.request_id, reservation.subject.tenant)
        kept = self.reservations(reservation.request_id)
        kept = [r for r in kept if r.subject.tenant != key[1]]
        self._reservations[key[0]] = [*kept, reservation]
        return key

    def insert_reservation(self, reservation: Reservation) -> None:
        self._inserts[self._keep(reservation)] = reservation

    def update_reservation(self, reservation: Reservation) -> None:
        key = self._keep(reservation)
        if key in self._inserts:
            self._inserts[key] = reservation
        else:
            self._updates[key] = reservation

    # ledger and rollups
    def append(self, event: Event) -> Event:
        if not self._event_ids:
            return self._inner.append(event)
        stored = event.with_id(self._event_ids.pop(0))
        assert stored.id is not None
        self._events[stored.id] = stored
        return stored

    def event(self, event_id: int) -> Event:
        found = self._events.get(event_id)
        return found if found is not None else self._inner.event(event_id)

    def bump_rollup(self, key: RollupKey, values: Sequence[int]) -> None:
        row = self._rollups.get(key)
        if row is None:
            self._rollups[key] = list(values)
        else:
            for i, value in enumerate(values):
                row[i] += value

    def flush(self) -> None:
        """Write everything out: counters, then reservations and events, then rollups."""
        self._flush_counters()
        self._inner.insert_events([self._events[i] for i in sorted(self._events)])
        self._inner.upsert_reservations(list(self._inserts.values()), list(self._updates.values()))
        self._inner.bump_rollups(list(self._rollups.items()))  # locked in one sorted statement
