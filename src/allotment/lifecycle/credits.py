"""Credit pools inside a call: drawing on grants, settling, refunding; adding and voiding grants.

A ``Pool`` is one member's grants and debt as a transaction found them
(locked), plus the moves it makes: counter deltas and credit entries, written
by ``Pool.flush``. Authorize, commit, release and the grant steps all move
credit through it, so the burn order, expiry and repayment rules live here
once (and the order itself in ``allotment.core.credits``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from allotment.core.budgets import Budget
from allotment.core.credits import (
    CreditEntry,
    EntryKind,
    Grant,
    burn_order,
    debt_key,
    grant_key,
    split_key,
)
from allotment.core.decisions import CreditView, Decision
from allotment.core.engine import Applied
from allotment.core.ledger import Charge
from allotment.errors import ConflictError, NotFoundError, ValidationError
from allotment.lifecycle.budgets import find_budget
from allotment.lifecycle.tx import Config, Counting, Crediting, Credits, Delta

__all__ = [
    "GrantBalance",
    "Pool",
    "PoolStatus",
    "add_grant",
    "budget_charges",
    "credit_of",
    "find_pool",
    "grant_charges",
    "has_credit",
    "hold",
    "holds_credit",
    "open_pool",
    "open_pools",
    "pool_status",
    "release",
    "settle",
    "void_grant",
]


class _CreditTx(Counting, Crediting, Protocol):
    """What moving credit takes."""


@dataclass(slots=True)
class Pool:
    """One pool member's grants (burn order), their consumption and debt, and the moves made."""

    key: str
    member: str
    now: datetime
    grants: list[Grant]
    #: grant id -> [used, reserved]
    held: dict[str, list[int]]
    debt: int
    deltas: list[Delta] = field(default_factory=list)
    entries: list[CreditEntry] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    _available: int | None = None

    def room(self, grant: Grant) -> int:
        """What ``grant`` has left to draw now (0 once it has ended or is not yet effective)."""
        if not grant.live(self.now) or grant.id in self.closed:
            return 0
        used, reserved = self.held.get(grant.id, (0, 0))
        return max(0, grant.amount - used - reserved)

    def available(self) -> int:
        """What the live grants have left (kept until a move changes it: each credit
        entry asks, and summing every grant each time took 7 % of a pool's pair)."""
        if self._available is None:
            self._available = sum(self.room(g) for g in self.grants)
        return self._available

    def balance(self) -> int:
        """Available credit less debt: what each credit entry records after itself."""
        return self.available() - self.debt

    def _move(self, grant_id: str, used: int, reserved: int) -> None:
        self._available = None
        row = self.held.setdefault(grant_id, [0, 0])
        row[0] += used
        row[1] += reserved
        self.deltas.append((grant_key(self.key, grant_id), self.member, 0, used, reserved))

    def _entry(
        self, kind: EntryKind, amount: int, grant_id: str | None, request_id: str | None
    ) -> None:
        entry = CreditEntry(
            self.key, self.member, kind, amount, self.balance(), self.now, grant_id, request_id
        )
        self.entries.append(entry)

    def close_ended(self) -> None:
        """Write the expiry (or void) of every grant first seen ended, and close it."""
        for grant in self.grants:
            if grant.closed or grant.id in self.closed or not grant.ended(self.now):
                continue
            used, reserved = self.held.get(grant.id, (0, 0))
            left = max(0, grant.amount - used - reserved)
            self.closed.append(grant.id)
            self._available = None
            kind = EntryKind.VOID if _voided(grant, self.now) else EntryKind.EXPIRY
            self._entry(kind, left, grant.id, None)

    def repay(self) -> None:
        """Pay debt off from the live grants, in burn order."""
        for grant in self.grants:
            if self.debt <= 0:
                return
            take = min(self.debt, self.room(grant))
            if take:
                self.debt -= take
                self.deltas.append((debt_key(self.key), self.member, 0, -take, 0))
                self._move(grant.id, take, 0)
                self._entry(EntryKind.REPAYMENT, take, grant.id, None)

    def draw(self, amount: int, request_id: str, hold: bool) -> tuple[list[Charge], int]:
        """Draw ``amount`` on the live grants in burn order: held (authorize) or used
        (a commit drawing further). Returns the charges and what no grant covered."""
        charges = []
        for grant in self.grants:
            if amount <= 0:
                break
            take = min(amount, self.room(grant))
            if take:
                amount -= take
                if hold:  # the reservation's charge: authorize reserves it with the others
                    self.held.setdefault(grant.id, [0, 0])[1] += take
                    if self._available is not None:  # take <= the grant's room: exact
                        self._available -= take
                else:
                    self._move(grant.id, take, 0)
                charges.append(Charge(grant.key, self.member, 0, take))
                self._entry(EntryKind.DEBIT, take, grant.id, request_id)
        return charges, amount

    def keep(self, grant_id: str, used: int) -> None:
        """A commit turning ``used`` of its hold on a grant into use (the rest of the
        hold stays until ``unhold`` gives it back)."""
        self._move(grant_id, used, -used)

    def unhold(self, grant_id: str, held: int, request_id: str) -> None:
        """A release: the hold goes back to the grant."""
        self._move(grant_id, 0, -held)
        self._refunded(grant_id, held, request_id)

    def _refunded(self, grant_id: str, amount: int, request_id: str) -> None:
        self._entry(EntryKind.REFUND, amount, grant_id, request_id)
        grant = next((g for g in self.grants if g.id == grant_id), None)
        if grant is not None and (grant.closed or grant.id in self.closed):
            # Given back to a grant already closed: it expires (or is voided) at once.
            kind = EntryKind.VOID if _voided(grant, self.now) else EntryKind.EXPIRY
            self._entry(kind, amount, grant_id, request_id)

    def incur(self, amount: int, request_id: str) -> None:
        """What no grant covered becomes debt, repaid first by the next grant."""
        self.debt += amount
        self.deltas.append((debt_key(self.key), self.member, 0, amount, 0))
        self._entry(EntryKind.DEBT, amount, None, request_id)

    def view(self, drawn: Sequence[Charge] = ()) -> CreditView:
        """How the member stands, with what a call ``drawn`` on which grant."""
        taken = tuple((_grant_id(c), c.amount) for c in drawn)
        return CreditView(self.available(), self.debt, taken)

    def flush(self, tx: _CreditTx) -> None:
        """Write the moves: counters, closed grants, credit entries."""
        if self.deltas:
            tx.add(self.deltas)
            self.deltas = []
        for grant_id in self.closed:
            tx.close_grant(self.key, self.member, grant_id)
        self.closed = []
        if self.entries:
            tx.append_credits(self.entries)
            self.entries = []


def _voided(grant: Grant, at: datetime) -> bool:
    return grant.voided_at is not None and grant.voided_at <= at


def open_pool(
    tx: _CreditTx,
    key: str,
    member: str,
    now: datetime,
    write: bool = True,
    budget: Budget | None = None,
) -> Pool:
    """``key``'s grants for ``member``, locked; with ``write``, the period's recurring
    grants of ``budget`` are given, expired grants closed and debt repaid, as first
    observed (without: the recurring grants due are counted as if given)."""
    found, counters, debt = tx.held_grants(key, member)
    held = {g.id: [c.used, c.reserved] for g, c in zip(found, counters, strict=True)}
    due = _recurring_due(budget, key, member, now, held) if budget is not None else []
    if due and write:
        due = [tx.insert_grant(g) for g in due]
    pool = Pool(key, member, now, burn_order([*found, *due]), held, debt.used)
    for grant in due:
        held[grant.id] = [0, 0]
        if write:
            pool._entry(EntryKind.GRANT, grant.amount, grant.id, None)
    if write:
        pool.close_ended()
        pool.repay()
    return pool


def _recurring_due(
    budget: Budget, key: str, member: str, now: datetime, held: dict[str, list[int]]
) -> list[Grant]:
    """``budget``'s recurring grants of the current periods not given yet."""
    due = []
    for i, recurring in enumerate(budget.recurring_grants):
        grant = recurring.grant(i, key, member, now)
        if grant.id not in held:
            due.append(grant)
    return due


def grant_charges(charges: Iterable[Charge]) -> list[Charge]:
    """The charges that hold credit on a grant."""
    return [c for c in charges if split_key(c.budget_key) is not None]


def budget_charges(charges: Iterable[Charge]) -> list[Charge]:
    """The charges that hold room on a budget: all but ``grant_charges``."""
    return [c for c in charges if split_key(c.budget_key) is None]


def _by_member(charges: Iterable[Charge]) -> dict[tuple[str, str], list[Charge]]:
    """Grant holds by (pool, member), in the order held."""
    held: dict[tuple[str, str], list[Charge]] = {}
    for c in grant_charges(charges):
        held.setdefault((_pool_of(c), c.member), []).append(c)
    return held


def _grant_id(charge: Charge) -> str:
    found = split_key(charge.budget_key)
    assert found is not None, f"{charge.budget_key!r} is not a grant's counter"
    return found[1]


def has_credit(applied: Sequence[Applied]) -> bool:
    """Whether a credit pool counts the call (asked of every call: a loop, not ``any``
    over a generator, which cost 1 % of a plain pair's instructions)."""
    for hit in applied:
        if hit.budget.credits:
            return True
    return False


def holds_credit(charges: Sequence[Charge]) -> bool:
    """Whether a reservation may hold credit on a grant: a cheap test that is never
    wrong when it says no (a grant's counter key holds ``!``; a tenant's name may too)."""
    for charge in charges:
        if "!" in charge.budget_key:
            return True
    return False


def open_pools(tx: _CreditTx, applied: Sequence[Applied], now: datetime) -> dict[int, Pool]:
    """The pools among ``applied`` (by position), open."""
    return {i: open_pool(tx, a.budget.key, a.member, now, budget=a.budget)
            for i, a in enumerate(applied) if a.budget.credits}  # fmt: skip


def credit_of(applied: Sequence[Applied], pools: dict[int, Pool]) -> list[int]:
    """What each applied budget's grants add to its room (``engine.decide``'s ``credit``)."""
    return [pools[i].available() if i in pools else 0 for i in range(len(applied))]


def hold(
    tx: _CreditTx,
    pools: dict[int, Pool],
    decision: Decision,
    charges: tuple[Charge, ...],
    amounts: Sequence[int],
    request_id: str,
) -> tuple[Charge, ...]:
    """After ``engine.decide``: hold on the grants what each pool's allowance did not
    take (nothing when refused), show each pool in the decision, write the moves."""
    drawn: list[Charge] = []
    for i, pool in pools.items():
        taken: list[Charge] = []
        if decision.allowed:
            taken, short = pool.draw(amounts[i] - charges[i].amount, request_id, hold=True)
            assert not short, "decide admitted what the grants cannot cover"
            drawn.extend(taken)
        decision.budgets[i].credit = pool.view(taken)
        pool.flush(tx)
    return (*charges, *drawn)


def settle(
    tx: _CreditTx,
    applied: Sequence[Applied],
    amounts: Sequence[int],
    charges: Sequence[Charge],
    late: bool,
    now: datetime,
    request_id: str,
) -> tuple[list[int], list[tuple[Budget, Pool]], list[Delta]]:
    """A commit's credit moves: each pool keeps from its allowance's hold, then its
    grants' holds in the order drawn (the rest refunded, last drawn first), then
    draws further (room, grants in burn order, debt). Returns what lands on each
    budget's own counter, the pools moved, for the caller to ``flush`` (after
    starting a top-up where one is due), and the deltas of grant holds used as
    held, for the caller to write with its own. Grant holds whose pool no longer
    counts the call are refunded."""
    counted = list(amounts)
    moved: list[tuple[Budget, Pool]] = []
    deltas: list[Delta] = []
    held = {} if late else _by_member(charges)  # a late commit's holds were given back
    for i, a in enumerate(applied):
        if a.budget.credits:
            mine = held.pop((a.budget.key, a.member), [])
            counted[i], pool = _settle_pool(
                tx, a, amounts[i], charges, mine, late, now, request_id, deltas
            )
            if pool is not None:
                moved.append((a.budget, pool))
    for (pool_key, member), stale in held.items():
        unhold(tx, pool_key, member, stale, now, request_id)
    return counted, moved, deltas


def _settle_pool(
    tx: _CreditTx,
    a: Applied,
    amount: int,
    charges: Sequence[Charge],
    held: Sequence[Charge],
    late: bool,
    now: datetime,
    request_id: str,
    kept_as_held: list[Delta],
) -> tuple[int, Pool | None]:
    """``settle`` for one pool: what lands on its own counter, and the pool if it moved
    credit (None: the holds were used as held, so no balance moved)."""
    key = (a.budget.key, a.member, a.span.bucket)
    own = 0 if late else sum(c.amount for c in charges if c[:3] == key)
    rest = amount
    own_used = min(rest, own)
    rest -= own_used
    kept = []
    for c in held:
        take = min(rest, c.amount)
        kept.append((_grant_id(c), c.amount, take))
        rest -= take
    if rest:
        (used, reserved) = tx.read([a])[0]
        room = max(0, (a.budget.limit or 0) - used - own_used - reserved + own)
        more = min(rest, room)
        own_used += more
        rest -= more
    if not rest and all(n == take for _, n, take in kept) and a.budget.auto_topup is None:
        # The holds are used as held: the caller writes them with its own deltas.
        kept_as_held.extend((grant_key(a.budget.key, g), a.member, 0, n, -n) for g, n, _ in kept)
        return own_used, None
    pool = open_pool(tx, a.budget.key, a.member, now, budget=a.budget)
    for grant_id, _, take in kept:
        pool.keep(grant_id, take)
    for grant_id, n, take in reversed(kept):  # the last drawn is given back first
        if n > take:
            pool.unhold(grant_id, n - take, request_id)
    if rest:
        _, rest = pool.draw(rest, request_id, hold=False)
    if rest:
        pool.incur(rest, request_id)
    return own_used, pool


def unhold(
    tx: _CreditTx, pool_key: str, member: str, charges: Sequence[Charge], now: datetime,
    request_id: str,
) -> None:  # fmt: skip
    """Give a released call's holds back to their grants."""
    pool = open_pool(tx, pool_key, member, now)
    for c in charges:
        pool.unhold(_grant_id(c), c.amount, request_id)
    pool.flush(tx)


def _pool_of(charge: Charge) -> str:
    found = split_key(charge.budget_key)
    assert found is not None
    return found[0]


def release(tx: _CreditTx, charges: Sequence[Charge], now: datetime, request_id: str) -> None:
    """Refund a released reservation's grant holds (its other charges are the caller's)."""
    for (pool_key, member), mine in _by_member(charges).items():
        unhold(tx, pool_key, member, mine, now, request_id)


class _GrantTx(Counting, Credits, Protocol):
    """What adding, voiding and reading grants takes."""


def find_pool(tx: Config, pool_id: str, tenant: str | None) -> Budget:
    """The credit pool ``pool_id`` as ``tenant`` sees it: a budget (``find_budget``), or a
    plan's budget (``<plan>.<slot>``: grants layered on a plan belong to its slot)."""
    try:
        return find_budget(tx, pool_id, tenant)
    except NotFoundError:
        for plan in tx.all_plans(None):
            if tenant is None or plan.tenant in (None, tenant):
                for budget in plan.budgets:
                    if budget.id == pool_id:
                        return budget
        raise


def check_pool(budget: Budget) -> None:
    """Only a budget with ``credits: true`` is a credit pool."""
    if not budget.credits:
        raise ValidationError("pool", f"budget {budget.id!r} is not a credit pool (credits: true)")


def check_member(budget: Budget, member: str) -> None:
    """A pool's grants belong to one member of a ``per`` pool, or to the whole pool."""
    check_pool(budget)
    if budget.per is None and member:
        raise ValidationError("member", f"pool {budget.id!r} is not per member: leave member out")
    if budget.per is not None and not member:
        raise ValidationError("member", f"pool {budget.id!r} is per {budget.per}: name the member")


def add_grant(tx: _GrantTx, budget: Budget, grant: Grant, now: datetime) -> tuple[Grant, bool]:
    """Add ``grant`` to ``budget``'s pool, or find the grant its idempotency key (or id)
    already added: then the same grant again is a replay (False), another a conflict.

    The new grant repays debt first, when it is live; every move is a credit entry."""
    check_member(budget, grant.member)
    stored = tx.insert_grant(grant)
    if stored is not grant:
        if _terms(stored) != _terms(grant):
            raise ConflictError(
                grant.idempotency_key or grant.id, "already added a grant with other terms"
            )
        return stored, False
    pool = open_pool(tx, budget.key, grant.member, now, write=False)
    pool._entry(EntryKind.GRANT, grant.amount, grant.id, None)
    pool.close_ended()
    pool.repay()
    pool.flush(tx)
    return stored, True


def _terms(grant: Grant) -> tuple[object, ...]:
    """What a replay of a grant must repeat. A grant effective from when it was added
    was given no ``effective_at``: a replay a moment later is the same grant."""
    effective = None if grant.effective_at == grant.created_at else grant.effective_at
    return (grant.pool, grant.member, grant.amount, grant.kind, grant.priority,
            effective, grant.expires_at, dict(grant.metadata))  # fmt: skip


def void_grant(tx: _GrantTx, budget: Budget, member: str, grant_id: str, now: datetime) -> Grant:
    """Void a grant: what it has left is gone (a ``void`` entry); holds on it stand until
    their calls commit or release. Voiding twice changes nothing."""
    check_member(budget, member)
    found = [g for g in tx.grants(budget.key, member) if g.id == grant_id]
    if not found:
        raise NotFoundError(f"no grant {grant_id!r} in pool {budget.id!r}")
    if found[0].voided_at is None:
        tx.void_grant(budget.key, member, grant_id, now)
        pool = open_pool(tx, budget.key, member, now, budget=budget)
        pool.flush(tx)
        found = [g for g in tx.grants(budget.key, member) if g.id == grant_id]
    return found[0]


@dataclass(frozen=True, slots=True)
class GrantBalance:
    """A grant with what has been drawn (``used``), held (``reserved``) and is left."""

    grant: Grant
    used: int
    reserved: int
    available: int


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """A pool member's grants, available credit and debt at one instant."""

    budget: Budget
    member: str
    available: int
    debt: int
    grants: tuple[GrantBalance, ...]


def pool_status(tx: _GrantTx, budget: Budget, member: str, now: datetime) -> PoolStatus:
    """Where ``member``'s credit stands in ``budget``'s pool (reads only)."""
    check_member(budget, member)
    pool = open_pool(tx, budget.key, member, now, write=False, budget=budget)
    rows = []
    for grant in pool.grants:
        used, reserved = pool.held.get(grant.id, (0, 0))
        rows.append(GrantBalance(grant, used, reserved, pool.room(grant)))
    return PoolStatus(budget, member, pool.available(), pool.debt, tuple(rows))
