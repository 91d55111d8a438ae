"""In-process store: dicts behind one lock, for tests, demos and single processes.

Each transaction holds the store's lock and keeps an undo log, so an error
halfway through leaves nothing behind, as a database rollback would.

Events and finished reservations are kept as rows, as a database would keep
them: exact tuples of plain values (subjects interned to an index, the price
as JSON text: orjson's bytes, cut down from a 1 KB buffer, cost 2 µs each to
allocate when kept by the thousand), turned back into ``Event`` and
``Reservation`` when read.
CPython's collector stops tracking a tuple that holds only such values, so
the rows stay out of garbage collections (the lists and dicts holding them
are still walked by full collections, which are rare). Kept as dataclasses,
each authorize+commit pair left nine tracked objects behind, and the full
collections their growth brought about took 15 % of a single thread's time.
A held reservation stays an object: it lives only until its commit, which
reads it.
"""

from __future__ import annotations

import heapq
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from operator import add, sub
from typing import Any, TypeVar

from allotment.core.budgets import Budget, in_order
from allotment.core.credits import CreditEntry, Grant, counter_keys
from allotment.core.engine import Applied, Counter, counter_from_row
from allotment.core.fx import NO_RATES, FxRate, Rates
from allotment.core.keys import ApiKey
from allotment.core.ledger import (
    CHARGE_WIDTH,
    Charge,
    Event,
    EventStatus,
    Reservation,
    ReservationState,
    charge_from_row,
)
from allotment.core.plans import Assignment, Plan
from allotment.core.subjects import Subject
from allotment.core.topups import TopUp, TopUpState
from allotment.core.usage import usage_from_row
from allotment.errors import ConfigurationError
from allotment.lifecycle.tx import Delta, RollupKey, Slot, Tx
from allotment.store._rows import dumps, loads
from allotment.store._transactional import TransactionalStore
from allotment.store.base import EventQuery

__all__ = ["MemoryStore"]

T = TypeVar("T")


class _State:
    """Everything a memory store holds."""

    def __init__(self) -> None:
        self.budgets: dict[str, Budget] = {}  # by Budget.key
        self.rates: Rates = NO_RATES
        self.keys: dict[str, tuple[ApiKey, str]] = {}
        self.by_tenant: dict[str | None, list[Budget]] = {}
        #: by Plan.key
        self.plans: dict[str, Plan] = {}
        #: cleared with ``by_tenant``
        self.plans_by_tenant: dict[str, list[Plan]] = {}
        #: by (tenant, member)
        self.assignments: dict[tuple[str, str], Assignment] = {}
        self.counters: dict[tuple[str, str, int], list[int]] = {}
        #: by (request id, tenant): held reservations as objects, finished ones as rows
        self.reservations: dict[tuple[str, str], Reservation | _ReservationRow] = {}
        #: the tenant using each request id (a tuple of them when several do), so
        #: that no container per request id is left for the collector to walk
        self.tenants_of: dict[str, str | tuple[str, ...]] = {}
        #: (expires_at, request_id, tenant) of held reservations
        self.expiry: list[tuple[datetime, str, str]] = []
        self.events: list[_EventRow] = []
        self.subjects: list[Subject] = []
        self.subject_index: dict[Subject, int] = {}
        self.rollups: dict[str, dict[RollupKey, list[int]]] = defaultdict(dict)
        self.meta: dict[str, str] = {}
        #: by pool key: grant id -> grant
        self.grants: dict[str, dict[str, Grant]] = defaultdict(dict)
        #: (pool key, idempotency key) -> grant id
        self.grant_keys: dict[tuple[str, str], str] = {}
        self.credit_entries: list[CreditEntry] = []
        #: by id, in the order started
        self.topups: dict[str, TopUp] = {}
        #: leases' slots by (budget key, member): (tenant, request id) -> expires at
        self.slots: dict[tuple[str, str], dict[tuple[str, str], datetime]] = defaultdict(dict)
        #: the (budget key, member) of each lease's slots, by (tenant, request id)
        self.slots_of: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def intern(self, subject: Subject) -> int:
        """The index of ``subject`` in ``subjects`` (added when new; never undone)."""
        index = self.subject_index.get(subject)
        if index is None:
            index = self.subject_index[subject] = len(self.subjects)
            self.subjects.append(subject)
        return index

    def event_row(self, event: Event) -> _EventRow:
        assert event.id is not None
        return (
            event.id, event.request_id, str(event.status), self.intern(event.subject),
            event.provider, event.model, event.usage.as_tuple(), event.occurred_at,
            event.recorded_at, event.currency, event.reason, event.budget_id,
            dumps(event.price), event.payload_hash,
            None if event.estimate is None else event.estimate.as_tuple(),
        )  # fmt: skip

    def event(self, row: _EventRow) -> Event:
        (event_id, request_id, status, subject, provider, model, usage, occurred_at, recorded_at,
         currency, reason, budget_id, price, payload_hash, estimate) = row  # fmt: skip
        return Event(
            request_id, _EVENT_STATUS[status], self.subjects[subject], provider, model,
            usage_from_row(usage), occurred_at, recorded_at, currency, reason, budget_id,
            loads(price), payload_hash, event_id,
            None if estimate is None else usage_from_row(estimate),
        )  # fmt: skip

    def reservation_row(self, reservation: Reservation) -> Reservation | _ReservationRow:
        r = reservation
        if r.state is ReservationState.HELD:
            return r
        return (
            r.request_id, self.intern(r.subject), r.provider, r.model, r.estimate.as_tuple(),
            sum(r.charges, ()), r.authorized_at, r.expires_at, r.payload_hash,
            str(r.state), r.commit_hash, r.event_id, r.ttl, r.max_until, r.slots,
        )  # fmt: skip

    def reservation(self, row: Reservation | _ReservationRow) -> Reservation:
        if isinstance(row, Reservation):
            return row
        (request_id, subject, provider, model, estimate, charges, authorized_at, expires_at,
         payload_hash, state, commit_hash, event_id, ttl, max_until, slots) = row  # fmt: skip
        return Reservation(
            request_id, self.subjects[subject], provider, model, usage_from_row(estimate),
            _charges(charges), authorized_at, expires_at, payload_hash,
            _RESERVATION_STATE[state], commit_hash, event_id, ttl, max_until, slots,
        )  # fmt: skip


#: id, request_id, status, subject index, provider, model, usage, occurred_at,
#: recorded_at, currency, reason, budget_id, price (JSON), payload_hash, estimate;
#: usage and estimate in Usage's field order (``as_tuple``, ``usage_from_row``)
_EventRow = tuple[Any, ...]
#: where the ledger's queries find what they filter on in an event row (the row
#: codec, ``_State.event_row`` and ``_State.event``, is the one other place)
_STATUS, _SUBJECT, _OCCURRED_AT = 2, 3, 7
#: request_id, subject index, provider, model, estimate, charges (their fields in
#: one flat tuple), authorized_at, expires_at, payload_hash, state, commit_hash, event_id,
#: ttl, max_until, slots
_ReservationRow = tuple[Any, ...]
_EVENT_STATUS = {s.value: s for s in EventStatus}
_ZERO = Counter()
_RESERVATION_STATE = {s.value: s for s in ReservationState}


def _charges(flat: tuple[Any, ...]) -> tuple[Charge, ...]:
    """The charges a row keeps as one flat tuple (an exact tuple of atoms: the
    collector untracks it, and ``sum`` makes it in a third of ``map(tuple)``'s time)."""
    return tuple(charge_from_row(flat[i : i + CHARGE_WIDTH])
                 for i in range(0, len(flat), CHARGE_WIDTH))  # fmt: skip


class MemoryStore(TransactionalStore):
    """A store that lives and dies with the process (``memory://``)."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._state = _State()
        #: the one transaction object, reused: the lock lets one run at a time
        self._tx = _MemoryTx(self._state)

    def cached_budgets(self, tenant: str) -> Sequence[Budget] | None:
        with self._lock:
            return list(self._tx.budgets_for(tenant))

    def _write(self, operation: Callable[[Tx], T]) -> T:
        # A transaction without a generator context manager (2 µs a call).
        with self._lock:
            tx = self._tx
            try:
                return operation(tx)
            except BaseException:
                tx.undo()
                raise
            finally:
                tx.done()

    _read = _write


class _MemoryTx:
    """The ``Tx`` primitives over a ``_State``, logging how to undo each write."""

    def __init__(self, state: _State) -> None:
        self._s = state
        self._undo: list[Callable[[], object]] = []

    def _log(self, undo: Callable[[], object]) -> None:
        self._undo.append(undo)

    def undo(self) -> None:
        """Reverse every write of this transaction, last first."""
        for undo in reversed(self._undo):
            undo()

    def done(self) -> None:
        """Drop the undo log: the next transaction reuses this object, and the
        log's closures hold what they captured (some 45 objects a pair) alive."""
        self._undo.clear()

    # budgets
    def budgets_for(self, tenant: str) -> Sequence[Budget]:
        cached = self._s.by_tenant.get(tenant)
        if cached is None:
            planned = (b for p in self.plans_for(tenant) for b in p.budgets)
            own = (b for b in self._s.budgets.values() if b.tenant in (None, tenant))
            cached = in_order([*own, *planned])
            self._s.by_tenant[tenant] = cached
        return cached

    def plans_for(self, tenant: str) -> Sequence[Plan]:
        cached = self._s.plans_by_tenant.get(tenant)
        if cached is None:
            cached = [p for p in self._s.plans.values() if p.tenant in (None, tenant)]
            self._s.plans_by_tenant[tenant] = cached
        return cached

    def all_plans(self, tenant: str | None) -> Sequence[Plan]:
        plans = self._s.plans.values()
        return sorted((p for p in plans if tenant is None or p.tenant == tenant),
                      key=lambda p: (p.tenant is not None, p.id, p.key))  # fmt: skip

    def plan(self, key: str) -> Plan | None:
        return self._s.plans.get(key)

    def put_plan(self, plan: Plan) -> None:
        self._forget_config()
        self._log(self._forget_config)  # undone last: after the plan is put back
        self._put(self._s.plans, plan.key, plan)

    def _forget_config(self) -> None:
        self._s.by_tenant.clear()
        self._s.plans_by_tenant.clear()

    def delete_plan(self, key: str) -> None:
        before = self._s.plans.pop(key, None)
        self._forget_config()
        self._log(self._forget_config)  # undone last: after the plan is back
        if before is not None:
            self._log(partial(self._s.plans.__setitem__, key, before))

    def assignment(self, tenant: str, member: str) -> Assignment | None:
        return self._s.assignments.get((tenant, member))

    def put_assignment(self, assignment: Assignment) -> None:
        key = (assignment.tenant, assignment.member)
        before = self._s.assignments.get(key)
        self._s.assignments[key] = assignment
        if before is None:
            self._log(lambda: self._s.assignments.pop(key))
        else:
            self._log(lambda: self._s.assignments.__setitem__(key, before))

    def rates(self) -> Rates:
        return self._s.rates

    def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        self._s.keys[key.id] = (replace(key), secret_hash)
        self._log(partial(_forget_key, self._s.keys, key.id))

    def key(self, key_id: str) -> tuple[ApiKey, str] | None:
        found = self._s.keys.get(key_id)
        return None if found is None else (replace(found[0]), found[1])

    def keys(self, tenant: str | None) -> list[ApiKey]:
        return [replace(k) for k, _ in self._s.keys.values() if tenant in (None, k.tenant)]

    def update_key(self, key: ApiKey) -> None:
        before = self._s.keys[key.id]
        self._s.keys[key.id] = (replace(key), before[1])
        self._log(lambda: self._s.keys.__setitem__(key.id, before))

    def put_rate(self, rate: FxRate) -> None:
        before = self._s.rates
        kept = [r for r in before if (r.source, r.target, r.effective_from) != (
            rate.source, rate.target, rate.effective_from)]  # fmt: skip
        self._s.rates = Rates([*kept, rate])
        self._log(lambda: setattr(self._s, "rates", before))

    def all_budgets(self, tenant: str | None) -> Sequence[Budget]:
        return in_order(b for b in self._s.budgets.values() if tenant is None or b.tenant == tenant)

    def lock_config(self) -> None:
        """Nothing to do: every transaction holds the store's lock."""

    def budget(self, key: str) -> Budget | None:
        return self._s.budgets.get(key)

    def budgets_named(self, budget_id: str) -> list[Budget]:
        return [b for b in self._s.budgets.values() if b.id == budget_id]

    def put_budget(self, budget: Budget) -> None:
        previous = self._s.budgets.get(budget.key)
        self._s.budgets[budget.key] = budget
        self._s.by_tenant.clear()
        self._log(lambda: self._restore_budget(budget.key, previous))

    def insert_budget(self, budget: Budget) -> bool:
        if budget.key in self._s.budgets:
            return False
        self.put_budget(budget)
        return True

    def delete_budget(self, key: str) -> None:
        previous = self._s.budgets.pop(key, None)
        self._s.by_tenant.clear()
        self._log(lambda: self._restore_budget(key, previous))
        self.clear_counters([key])

    def _restore_budget(self, key: str, budget: Budget | None) -> None:
        if budget is None:
            self._s.budgets.pop(key, None)
        else:
            self._s.budgets[key] = budget
        self._s.by_tenant.clear()

    # counters
    def read(self, applied: Sequence[Applied]) -> list[Counter]:
        out = []
        for hit in applied:
            span, budget_key, member = hit.span, hit.budget.key, hit.member
            if span.first_bucket == span.bucket:
                row = self._s.counters.get((budget_key, member, span.bucket))
                out.append(counter_from_row(row) if row else _ZERO)
                continue
            used = reserved = 0
            for bucket in _counted_buckets(hit):
                row = self._s.counters.get((budget_key, member, bucket))
                if row:
                    used += row[0]
                    reserved += row[1]
            out.append(Counter(used, reserved))
        return out

    def buckets(self, hit: Applied) -> list[tuple[int, int]]:
        at = (hit.budget.key, hit.member)
        out = []
        for bucket in _counted_buckets(hit):
            row = self._s.counters.get((*at, bucket))
            if row and row[0] + row[1]:
                out.append((bucket, row[0] + row[1]))
        return out

    # leases' slots
    def insert_slots(self, slots: Sequence[Slot]) -> None:
        for budget_key, member, tenant, request_id, expires_at in slots:
            lease, at = (tenant, request_id), (budget_key, member)
            self._s.slots[at][lease] = expires_at
            self._s.slots_of.setdefault(lease, []).append(at)
            self._log(partial(self._unslot, lease, at))

    def _unslot(self, lease: tuple[str, str], at: tuple[str, str]) -> None:
        self._s.slots[at].pop(lease, None)
        held = self._s.slots_of.get(lease, [])
        if at in held:
            held.remove(at)
        if not held:
            self._s.slots_of.pop(lease, None)

    def drop_slots(self, tenant: str, request_id: str) -> None:
        lease = (tenant, request_id)
        for at in list(self._s.slots_of.get(lease, ())):
            expires_at = self._s.slots[at][lease]
            self._unslot(lease, at)
            self._log(partial(self.insert_slots, [(*at, *lease, expires_at)]))

    def extend_slots(self, tenant: str, request_id: str, expires_at: datetime) -> None:
        lease = (tenant, request_id)
        for at in self._s.slots_of.get(lease, ()):
            before = self._s.slots[at][lease]
            self._s.slots[at][lease] = expires_at
            self._log(partial(self._s.slots[at].__setitem__, lease, before))

    def soonest_slot(self, budget_key: str, member: str) -> datetime | None:
        held = self._s.slots.get((budget_key, member))
        return min(held.values()) if held else None

    def expired_slots(
        self, budget_key: str, member: str, now: datetime, limit: int
    ) -> list[tuple[str, str]]:
        held = self._s.slots.get((budget_key, member), {})
        return [lease for x, lease in sorted((x, lease) for lease, x in held.items() if x <= now)][
            :limit
        ]

    def add(self, deltas: Sequence[Delta]) -> None:
        counters = self._s.counters
        done: list[tuple[list[int], int, int]] = []
        for budget_key, member, bucket, used, reserved in deltas:
            key = (budget_key, member, bucket)
            row = counters.get(key)
            if row is None:
                row = counters[key] = [0, 0]
            row[0] += used
            row[1] += reserved
            done.append((row, used, reserved))
        self._undo.append(partial(_sub, done))

    def read_keys(self, keys: Sequence[tuple[str, str, int]]) -> list[Counter]:
        counters = self._s.counters
        return [Counter(*counters[k]) if k in counters else _ZERO for k in keys]

    def clear_counters(self, keys: Sequence[str] | None) -> None:
        before = dict(self._s.counters)
        if keys is None:
            self._s.counters = {}
        else:
            wanted = set(keys)
            self._s.counters = {k: v for k, v in self._s.counters.items() if k[0] not in wanted}
        self._log(lambda: setattr(self._s, "counters", before))

    def all_counters(self) -> dict[tuple[str, str, int], tuple[int, int]]:
        return {k: (v[0], v[1]) for k, v in self._s.counters.items() if v[0] or v[1]}

    # credit pools
    def grants(self, pool: str, member: str) -> list[Grant]:
        return [g for g in self._s.grants.get(pool, {}).values() if g.member == member]

    def held_grants(self, pool: str, member: str) -> tuple[list[Grant], list[Counter], Counter]:
        grants = self.grants(pool, member)
        *held, debt = self.read_keys(counter_keys(pool, member, grants))
        return grants, held, debt

    def _put(self, rows: dict[str, Any], key: str, row: object) -> None:
        """``rows[key] = row``, undone by putting back what was there (or nothing)."""
        before = rows.get(key)
        rows[key] = row
        if before is None:
            self._log(lambda: rows.pop(key))
        else:
            self._log(lambda: rows.__setitem__(key, before))

    def _set_grant(self, grant: Grant) -> None:
        self._put(self._s.grants[grant.pool], grant.id, grant)

    def close_grant(self, pool: str, member: str, grant_id: str) -> None:
        self._set_grant(replace(self._s.grants[pool][grant_id], closed=True))

    def void_grant(self, pool: str, member: str, grant_id: str, at: datetime) -> None:
        self._set_grant(replace(self._s.grants[pool][grant_id], voided_at=at))

    def insert_grant(self, grant: Grant) -> Grant:
        taken = self._s.grants.get(grant.pool, {})
        key = grant.idempotency_key
        if key is not None and (grant.pool, key) in self._s.grant_keys:
            return taken[self._s.grant_keys[grant.pool, key]]
        if grant.id in taken:
            return taken[grant.id]
        self._set_grant(grant)
        if key is not None:
            self._s.grant_keys[grant.pool, key] = grant.id
            self._log(lambda: self._s.grant_keys.pop((grant.pool, key)))
        return grant

    def pool_grants(self, pool: str, member: str | None) -> list[Grant]:
        grants = self._s.grants.get(pool, {}).values()
        return sorted((g for g in grants if member is None or g.member == member),
                      key=lambda g: (g.member, g.created_at, g.id))  # fmt: skip

    def append_credits(self, entries: Sequence[CreditEntry]) -> None:
        kept = self._s.credit_entries
        start = len(kept)
        kept.extend(replace(e, id=start + i + 1) for i, e in enumerate(entries))
        self._log(lambda: kept.__delitem__(slice(start, None)))

    def credit_entries(
        self, pool: str | None, member: str | None, after_id: int, limit: int
    ) -> list[CreditEntry]:
        out = []
        for entry in self._s.credit_entries[after_id:]:
            if (pool is None or entry.pool == pool) and (member is None or entry.member == member):
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    # auto top-ups
    def latest_topup(self, pool: str, member: str) -> TopUp | None:
        mine = [t for t in self._s.topups.values() if (t.pool, t.member) == (pool, member)]
        return max(mine, key=lambda t: (t.state in _OPEN, t.created_at, t.id), default=None)

    def start_topup(self, topup: TopUp) -> bool:
        if any((t.pool, t.member, t.state) == (topup.pool, topup.member, TopUpState.PENDING)
               for t in self._s.topups.values()):  # fmt: skip
            return False
        self.put_topup(topup)
        return True

    def drop_topup(self, topup: TopUp) -> None:
        before = self._s.topups.pop(topup.id)
        self._log(lambda: self._s.topups.__setitem__(topup.id, before))

    def due_topups(self, now: datetime, limit: int) -> list[TopUp]:
        due = [t for t in self._s.topups.values() if t.state is TopUpState.PENDING
               and (t.next_attempt_at is None or t.next_attempt_at <= now)
               and (t.claimed_until is None or t.claimed_until <= now)]  # fmt: skip
        return due[:limit]

    def topup(self, topup_id: str) -> TopUp | None:
        return self._s.topups.get(topup_id)

    def put_topup(self, topup: TopUp) -> None:
        self._put(self._s.topups, topup.id, topup)

    # reservations, keyed by (request id, tenant): a request id belongs to its tenant
    def reservations(self, request_id: str) -> list[Reservation]:
        tenants = self._s.tenants_of.get(request_id)
        if tenants is None:
            return []
        rows = self._s.reservations
        if type(tenants) is str:
            return [self._s.reservation(rows[request_id, tenants])]
        return [self._s.reservation(rows[request_id, tenant]) for tenant in tenants]

    def insert_reservation(self, reservation: Reservation) -> None:
        request_id, tenant = reservation.request_id, reservation.subject.tenant
        self._s.reservations[request_id, tenant] = self._s.reservation_row(reservation)
        before = self._s.tenants_of.get(request_id)
        if before is None:
            self._s.tenants_of[request_id] = tenant
        else:  # another tenant's id too: rare, so a tuple of them
            others = (before,) if type(before) is str else before
            self._s.tenants_of[request_id] = (*others, tenant)
        if reservation.state is ReservationState.HELD:  # records are born committed
            heapq.heappush(self._s.expiry, (reservation.expires_at, request_id, tenant))
        self._log(lambda: self._forget_reservation(request_id, tenant, before))

    def update_reservation(self, reservation: Reservation) -> None:
        key = (reservation.request_id, reservation.subject.tenant)
        previous = self._s.reservations[key]
        self._s.reservations[key] = self._s.reservation_row(reservation)
        self._log(lambda: self._s.reservations.__setitem__(key, previous))
        if reservation.state is ReservationState.HELD and (
            not isinstance(previous, Reservation) or previous.expires_at != reservation.expires_at
        ):  # a heartbeat moved its expiry: expired() skips the stale entry
            entry = (reservation.expires_at, *key)
            heapq.heappush(self._s.expiry, entry)
            self._log(partial(_unpush, self._s.expiry, entry))

    def _forget_reservation(
        self, request_id: str, tenant: str, tenants: str | tuple[str, ...] | None
    ) -> None:
        del self._s.reservations[request_id, tenant]
        if tenants is None:
            del self._s.tenants_of[request_id]
        else:
            self._s.tenants_of[request_id] = tenants

    def expired(self, now: datetime, limit: int) -> list[Reservation]:
        out: list[Reservation] = []
        while self._s.expiry and self._s.expiry[0][0] <= now and len(out) < limit:
            entry = heapq.heappop(self._s.expiry)
            self._log(partial(heapq.heappush, self._s.expiry, entry))
            _, request_id, tenant = entry
            row = self._s.reservations.get((request_id, tenant))
            if (
                isinstance(row, Reservation)
                and row.state is ReservationState.HELD
                and row.expires_at == entry[0]  # else a heartbeat moved it: another entry
            ):
                out.append(row)
        return out

    def held(self) -> Iterable[Reservation]:
        return [r for r in self._s.reservations.values() if isinstance(r, Reservation)]

    # ledger
    def append(self, event: Event) -> Event:
        # The event is the one the step just made for this transaction: numbered in place.
        event.id = len(self._s.events) + 1
        self._s.events.append(self._s.event_row(event))
        self._undo.append(partial(_drop_last, self._s.events))
        return event

    def update_event(self, event: Event) -> None:
        assert event.id is not None
        index = event.id - 1
        before = self._s.events[index]
        self._s.events[index] = self._s.event_row(event)
        self._log(lambda: self._s.events.__setitem__(index, before))

    def event(self, event_id: int) -> Event:
        return self._s.event(self._s.events[event_id - 1])

    def events(self, query: EventQuery) -> Iterable[Event]:
        out: list[Event] = []
        subjects = self._s.subjects
        status = None if query.status is None else query.status.value
        for row in self._s.events[query.after_id :]:
            if (
                (query.tenant is None or subjects[row[_SUBJECT]].tenant == query.tenant)
                and (status is None or row[_STATUS] == status)
                and (query.since is None or row[_OCCURRED_AT] >= query.since)
                and (query.until is None or row[_OCCURRED_AT] < query.until)
            ):
                event = self._s.event(row)
                if query.price_source is None or event.price.get("source") == query.price_source:
                    out.append(event)
                    if len(out) >= query.limit:
                        break
        return out

    def counting_events(self, tenant: str | None) -> Iterable[Event]:
        subjects = self._s.subjects
        return (
            self._s.event(row)
            for row in self._s.events
            if row[_STATUS] in _COUNTING
            and (tenant is None or subjects[row[_SUBJECT]].tenant == tenant)
        )

    # rollups
    def bump_rollup(self, key: RollupKey, values: Sequence[int]) -> None:
        rows = self._s.rollups[key[0]]
        row = rows.get(key)
        if row is None:
            row = rows[key] = [0] * len(values)
        row[:] = map(add, row, values)
        self._undo.append(partial(_sub_all, row, values))

    def clear_rollups(self, from_hour: int | None) -> None:
        before = self._s.rollups
        kept: dict[str, dict[RollupKey, list[int]]] = defaultdict(dict)
        if from_hour is not None:
            for tenant, rows in before.items():
                kept[tenant] = {k: list(v) for k, v in rows.items() if k[1] < from_hour}
        self._s.rollups = kept
        self._log(lambda: setattr(self._s, "rollups", before))

    # archive: the memory store has no ledger to outlive the process, so none to archive
    def baseline(self, keys: Sequence[str] | None) -> dict[tuple[str, str, int], int]:
        return {}

    def add_baseline(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        raise ConfigurationError("the memory store cannot archive; use SQLite or PostgreSQL")

    def delete_events(self, event_ids: Sequence[int]) -> None:
        raise ConfigurationError("the memory store cannot archive; use SQLite or PostgreSQL")

    def delete_finished_reservations(self, before: datetime) -> int:
        raise ConfigurationError("the memory store cannot archive; use SQLite or PostgreSQL")

    def meta(self, key: str) -> str | None:
        return self._s.meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        before = dict(self._s.meta)
        self._s.meta[key] = value
        self._log(lambda: setattr(self._s, "meta", before))

    def meta_default(self, key: str, value: str) -> str:
        if key not in self._s.meta:
            self.set_meta(key, value)
        return self._s.meta[key]

    def rollups(
        self, tenant: str, since: int | None, until: int | None
    ) -> Iterable[tuple[RollupKey, Sequence[int]]]:
        for key, values in self._s.rollups.get(tenant, {}).items():
            if (since is None or key[1] >= since) and (until is None or key[1] < until):
                yield key, values


_COUNTING = frozenset(s.value for s in EventStatus if s.counts)
#: a member's top-up that is under way or paused its auto top-up: at most one at a time
_OPEN = (TopUpState.PENDING, TopUpState.FAILED)


def _forget_key(keys: dict[str, tuple[ApiKey, str]], key_id: str) -> None:
    keys.pop(key_id, None)


def _drop_last(events: list[_EventRow]) -> None:
    events.pop()


def _sub(done: list[tuple[list[int], int, int]]) -> None:
    for row, used, reserved in done:
        row[0] -= used
        row[1] -= reserved


def _sub_all(row: list[int], values: Sequence[int]) -> None:
    row[:] = map(sub, row, values)


def _unpush(heap: list[tuple[datetime, str, str]], entry: tuple[datetime, str, str]) -> None:
    """Undo ``heapq.heappush(heap, entry)``."""
    heap.remove(entry)
    heapq.heapify(heap)


def _counted_buckets(hit: Applied) -> range:
    """The buckets of a rolling window ``counted_range`` counts: newer ones too, up to a
    window ahead (no call reads the clock a whole window before another)."""
    window, span = hit.budget.window, hit.span
    grain = window.granularity
    return range(span.first_bucket, span.bucket + (window.seconds or 0) + grain, grain)
