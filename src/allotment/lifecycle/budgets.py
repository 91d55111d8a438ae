"""Budgets and exchange rates: found by tenant-scoped id, claimed, written, and the
counters they change recounted from the ledger."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from allotment.core import engine
from allotment.core.budgets import Budget, Call
from allotment.core.credits import CreditEntry, EntryKind, debt_key, grant_key
from allotment.core.fx import FxRate
from allotment.core.ledger import Event
from allotment.core.subjects import check_identifier
from allotment.core.usage import Meter
from allotment.errors import ConflictError, NotFoundError, ValidationError
from allotment.lifecycle.tx import BudgetTx, Config, Configured, Credits, Key

__all__ = [
    "contributions",
    "counts_differently",
    "create_budget",
    "delete_budget",
    "find_budget",
    "put_budget",
    "put_config",
    "put_rate",
    "rebuild_counters",
]


def find_budget(tx: Config, budget_id: str, tenant: str | None) -> Budget:
    """The budget ``budget_id`` as ``tenant`` sees it: its own, else the deployment-wide
    one; without a tenant, the deployment-wide one, else the only tenant's with that id.

    Budget ids are scoped by tenant, so several tenants may each have one: then
    the tenant must be named (ValidationError naming ``tenant``).
    """
    check_identifier(tenant, "tenant")
    found = [b for b in tx.budgets_named(budget_id) if tenant is None or b.tenant in (None, tenant)]
    if not found:
        raise NotFoundError(f"no budget with id {budget_id!r}")
    if len(found) > 1:  # tenant budgets only: none shares its id with a deployment-wide one
        message = f"budget {budget_id!r} exists in {len(found)} tenants: name the tenant"
        raise ValidationError("tenant", message)
    return found[0]


def _claim_id(tx: Config, budget: Budget) -> None:
    """Refuse a budget whose id a budget of the other scope has (ConflictError).

    Tenants may share an id, but a tenant budget never shares its id with a
    deployment-wide one: decisions, refusals and the ledger name budgets by id,
    and a tenant sees the deployment-wide budgets beside its own. Configuration
    writes are serialised first, so two transactions cannot both claim an id.
    """
    tx.lock_config()
    for other in tx.budgets_named(budget.id):
        if other.tenant is None and budget.tenant is not None:
            raise ConflictError(budget.id, "a deployment-wide budget has this id")
        if other.tenant is not None and budget.tenant is None:
            raise ConflictError(budget.id, "tenant budgets have this id")


def create_budget(tx: BudgetTx, budget: Budget) -> None:
    """Add ``budget``, or raise ConflictError if its id is taken in its tenant."""
    _claim_id(tx, budget)
    # Insert-if-absent, not read-then-write: two transactions that both see
    # no budget cannot both create it (PostgreSQL reads committed data).
    if not tx.insert_budget(budget):
        raise ConflictError(budget.id, "a budget with this id already exists")
    rebuild_counters(tx, [budget])


def put_budget(tx: BudgetTx, budget: Budget) -> None:
    """Create or replace ``budget``; its counters are recounted if it counts differently."""
    _claim_id(tx, budget)
    previous = tx.budget(budget.key)
    tx.put_budget(budget)
    if previous is None or counts_differently(previous, budget):
        rebuild_counters(tx, [budget])


def put_rate(tx: BudgetTx, rate: FxRate) -> None:
    """Set ``rate``; the cost budgets it converts for are recounted (it can reach back)."""
    tx.put_rate(rate)
    touched = [
        b for b in tx.all_budgets(None)
        if b.meter is Meter.COST and b.currency in (rate.source, rate.target)
    ]  # fmt: skip
    if touched:
        rebuild_counters(tx, touched)


def put_config(tx: BudgetTx, rates: Sequence[FxRate], budgets: Sequence[Budget]) -> None:
    """Set ``rates``, then create or replace ``budgets``."""
    for rate in rates:
        put_rate(tx, rate)
    for budget in budgets:
        put_budget(tx, budget)


def delete_budget(tx: BudgetTx, budget: Budget) -> None:
    """Delete ``budget`` (found earlier) and its counters, unless it is protected by now."""
    current = tx.budget(budget.key)
    if current is None:
        raise NotFoundError(f"no budget with id {budget.id!r}")
    if current.protected:
        message = f"budget {budget.id!r} is protected: unprotect it first"
        raise ValidationError("protected", message)
    tx.delete_budget(budget.key)


def counts_differently(old: Budget, new: Budget) -> bool:
    """Whether a budget change alters which usage lands on which counter."""
    return (old.meter, old.window, old.match, old.exclude, old.per, old.tenant) != (
        new.meter,
        new.window,
        new.match,
        new.exclude,
        new.per,
        new.tenant,
    )


def rebuild_counters(tx: BudgetTx, budgets: Sequence[Budget]) -> int:
    """Recompute the counters of ``budgets`` from the ledger and held reservations.

    Applies the budgets' *current* definitions to the whole history, so it
    also backfills a budget created after usage happened. Archived history
    counts as it was counted when it was archived (``counter_baseline``).

    A credit pool's grants and debt are recounted from its credit ledger, and
    its own counter takes each call's usage less what grants and debt took.
    """
    keys = {b.key for b in budgets}
    movements = CreditMovements.of(tx, {b.key for b in budgets if b.credits})
    tx.clear_counters(sorted(keys | movements.keys))
    totals: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
    for key, used in tx.baseline(sorted(keys)).items():
        totals[key][0] += used
    tenants = {b.tenant for b in budgets}
    scope = None if None in tenants or len(tenants) != 1 else next(iter(tenants))
    events = list(tx.counting_events(scope))
    for key, used in contributions(tx, events, keys, movements.covered).items():
        totals[key][0] += used
    for key, drawn in movements.drawn.items():
        totals[key][0] += drawn
    for reservation in tx.held():
        for charge in reservation.charges:
            key = (charge.budget_key, charge.member, charge.bucket)
            if charge.budget_key in keys:
                totals[key][1] += charge.amount
            elif charge.budget_key in movements.keys:  # held on a grant: drawn, not yet used
                totals[key][0] -= charge.amount
                totals[key][1] += charge.amount
    tx.add([(b, m, k, used, reserved) for (b, m, k), (used, reserved) in totals.items()])
    return len(events)


@dataclass(slots=True)
class CreditMovements:
    """What credit ledgers say about counters: each grant's and debt's net draw, and
    how much of each call (pool key, request id) grants and debt took."""

    keys: set[str] = field(default_factory=set)
    drawn: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    covered: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    @classmethod
    def of(cls, tx: Credits, pools: set[str]) -> CreditMovements:
        """The movements of ``pools`` (pool keys), read from their credit ledgers."""
        found = cls()
        if not pools:
            return found
        for pool in pools:
            found.keys.add(debt_key(pool))
            found.keys.update(g.key for g in tx.pool_grants(pool, None))
        after = 0
        while True:
            page = tx.credit_entries(None, None, after, _PAGE)
            for entry in page:
                if entry.pool in pools:
                    found._count(entry)
            if len(page) < _PAGE:
                return found
            after = page[-1].id or 0

    def _count(self, entry: CreditEntry) -> None:
        kind, n = entry.kind, entry.amount
        grant = (
            None
            if entry.grant_id is None
            else (grant_key(entry.pool, entry.grant_id), entry.member, 0)
        )
        debt = (debt_key(entry.pool), entry.member, 0)
        call = (entry.pool, entry.request_id or "")
        if kind is EntryKind.DEBIT and grant is not None:
            self.drawn[grant] += n
            self.covered[call] += n
        elif kind is EntryKind.REFUND and grant is not None:
            self.drawn[grant] -= n
            self.covered[call] -= n
        elif kind is EntryKind.DEBT:
            self.drawn[debt] += n
            self.covered[call] += n
        elif kind is EntryKind.REPAYMENT and grant is not None:
            self.drawn[grant] += n
            self.drawn[debt] -= n


_PAGE = 10_000


def contributions(
    tx: Configured,
    events: Iterable[Event],
    keys: set[str] | None,
    covered: Mapping[tuple[str, str], int] | None = None,
) -> dict[Key, int]:
    """What counting ``events`` add to the counters of budgets ``keys`` (None: all);
    a credit pool's counter less what ``covered`` says its grants and debt took."""
    totals: dict[Key, int] = defaultdict(int)
    rates = tx.rates()
    for event in events:
        if not event.status.counts:
            continue
        call = Call(event.subject, event.provider, event.model)
        # Resolve against all the tenant's budgets: an override elsewhere
        # changes whether one of ``keys`` counts this event.
        applied = engine.resolve(
            tx.budgets_for(event.subject.tenant), call, event.occurred_at, event.currency, rates
        )
        for hit in applied:
            if keys is None or hit.budget.key in keys:
                amount = hit.amount(event.usage)
                if covered and hit.budget.credits:
                    amount -= covered.get((hit.budget.key, event.request_id), 0)
                totals[(hit.budget.key, hit.member, hit.span.bucket)] += amount
    return totals
