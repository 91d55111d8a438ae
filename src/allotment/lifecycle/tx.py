"""What a store transaction offers, as small capability protocols.

A lifecycle step names the narrowest set it needs: ``authorize`` takes a
``CallTx`` (the budgets in force, the counters it reads and charges, its
reservation, the ledger entry and its rollup), ``status`` a ``StatusTx``.
A backend's transaction implements them all (``Tx``); a group-commit batch
(``allotment.store._batch.BatchTx``) implements ``CallTx`` exactly, so a new
primitive that the call lifecycle starts to use cannot slip past the batch
unbuffered: the type checker refuses the batch until it offers it.

Each kind of resource names its own primitives, and the steps that use them
name the protocol, as credit pools do (``Crediting``), leases (``Leasing``)
and rate limits (``Limiting``); an outbox will get its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from allotment.core.budgets import Budget
from allotment.core.credits import CreditEntry, Grant
from allotment.core.engine import Applied, Counter
from allotment.core.fx import FxRate, Rates
from allotment.core.keys import ApiKey
from allotment.core.ledger import Event, Reservation
from allotment.core.plans import Assignment, Plan
from allotment.core.topups import TopUp
from allotment.core.usage import USAGE_FIELDS
from allotment.lifecycle.queries import EventQuery

__all__ = [
    "ROLLUP_DIMENSIONS",
    "ROLLUP_TOTALS",
    "Baseline",
    "BudgetTx",
    "CallTx",
    "Config",
    "Configured",
    "Counters",
    "Counting",
    "Crediting",
    "Credits",
    "Delta",
    "Key",
    "Keys",
    "Leasing",
    "Ledger",
    "Limiting",
    "MaintenanceTx",
    "Meta",
    "PlannedTx",
    "Planning",
    "Recording",
    "Reservations",
    "Reserving",
    "RollupKey",
    "Slot",
    "StatusTx",
    "SweepTx",
    "TopUps",
    "ToppingUp",
    "Tx",
]

#: a counter: (budget key, member, bucket)
Key = tuple[str, str, int]
#: (budget key, member, bucket, change of used, change of reserved)
Delta = tuple[str, str, int, int, int]
#: a lease's slot in a concurrency budget: (budget key, member, tenant, request id, expires at)
Slot = tuple[str, str, str, str, datetime]
#: tenant, hour (epoch s), user, key, agent, feature, provider, model, status
RollupKey = tuple[str, int, str, str, str, str, str, str, str]
ROLLUP_DIMENSIONS = ("user", "key", "agent", "feature", "provider", "model", "status")
#: usage totals a rollup keeps, after the call count: every usage field, cost_micros last
ROLLUP_TOTALS = USAGE_FIELDS


class Configured(Protocol):
    """The budgets, plans and exchange rates in force (cached per process, checked per
    transaction). ``budgets_for`` includes the budgets of the plans ``plans_for`` lists
    (``Plan.budgets``): a tenant's own and the deployment-wide ones."""

    def budgets_for(self, tenant: str) -> Sequence[Budget]: ...
    def plans_for(self, tenant: str) -> Sequence[Plan]: ...
    def rates(self) -> Rates: ...


class Config(Configured, Protocol):
    """Reading and writing budgets and rates."""

    def all_budgets(self, tenant: str | None) -> Sequence[Budget]: ...
    def budget(self, key: str) -> Budget | None: ...
    def budgets_named(self, budget_id: str) -> list[Budget]: ...
    def lock_config(self) -> None: ...
    def put_budget(self, budget: Budget) -> None: ...
    def insert_budget(self, budget: Budget) -> bool: ...
    def delete_budget(self, key: str) -> None: ...
    def put_rate(self, rate: FxRate) -> None: ...
    def all_plans(self, tenant: str | None) -> Sequence[Plan]: ...
    def plan(self, key: str) -> Plan | None: ...
    def put_plan(self, plan: Plan) -> None: ...
    def delete_plan(self, key: str) -> None: ...


class Planning(Protocol):
    """Which plan each member is on (assigned server-side; not configuration: assigning
    one reloads nothing)."""

    def assignment(self, tenant: str, member: str) -> Assignment | None: ...
    def put_assignment(self, assignment: Assignment) -> None: ...


class PlannedTx(Configured, Planning, Protocol):
    """What finding the budgets of a call takes: its member's plan among them."""


class Counting(Protocol):
    """The counters a call reads and moves."""

    def read(self, applied: Sequence[Applied]) -> list[Counter]: ...
    def read_keys(self, keys: Sequence[Key]) -> list[Counter]: ...
    def add(self, deltas: Sequence[Delta]) -> None: ...


class Counters(Counting, Protocol):
    """Counters wholesale: cleared and listed by rebuilds."""

    def clear_counters(self, keys: Sequence[str] | None) -> None: ...
    def all_counters(self) -> dict[Key, tuple[int, int]]: ...


class Crediting(Protocol):
    """A credit pool member's grants, and its credit ledger, as calls draw on them.

    ``grants`` locks the member's grants (every one, closed ones too) until
    the transaction ends; their consumption is in counters (``read_keys``).
    ``held_grants`` is both, with the member's debt counter: the grants, each
    one's counter in the same order, and the debt (one statement where a
    store can read them consistently in one).
    """

    def grants(self, pool: str, member: str) -> list[Grant]: ...
    def held_grants(self, pool: str, member: str) -> tuple[list[Grant], list[Counter], Counter]: ...
    def close_grant(self, pool: str, member: str, grant_id: str) -> None: ...
    def insert_grant(self, grant: Grant) -> Grant: ...
    def append_credits(self, entries: Sequence[CreditEntry]) -> None: ...


class Credits(Crediting, Protocol):
    """Grants voided and listed; the credit ledger read."""

    def void_grant(self, pool: str, member: str, grant_id: str, at: datetime) -> None: ...
    def pool_grants(self, pool: str, member: str | None) -> list[Grant]: ...
    def credit_entries(
        self, pool: str | None, member: str | None, after_id: int, limit: int
    ) -> list[CreditEntry]: ...


class ToppingUp(Protocol):
    """A pool member's auto top-ups, as a commit starts one (``allotment.core.topups``).

    ``start_topup`` takes the member's one pending slot, or answers False when
    a pending top-up holds it (another transaction's too: it waits for it).
    ``latest_topup`` is the member's open top-up (pending, or failed and not yet
    resumed: at most one exists), else the newest.
    """

    def latest_topup(self, pool: str, member: str) -> TopUp | None: ...
    def start_topup(self, topup: TopUp) -> bool: ...
    def drop_topup(self, topup: TopUp) -> None: ...


class TopUps(ToppingUp, Protocol):
    """Top-ups claimed by a paying worker and moved on by the outcome."""

    def due_topups(self, now: datetime, limit: int) -> list[TopUp]: ...
    def topup(self, topup_id: str) -> TopUp | None: ...
    def put_topup(self, topup: TopUp) -> None: ...


class Reserving(Protocol):
    """A call's reservation, under its request id (every tenant's)."""

    def reservations(self, request_id: str) -> list[Reservation]: ...
    def insert_reservation(self, reservation: Reservation) -> None: ...
    def update_reservation(self, reservation: Reservation) -> None: ...


class Reservations(Reserving, Protocol):
    """Reservations wholesale: expired, held, forgotten."""

    def expired(self, now: datetime, limit: int) -> list[Reservation]: ...
    def held(self) -> Iterable[Reservation]: ...
    def delete_finished_reservations(self, before: datetime) -> int: ...


class Leasing(Protocol):
    """Leases' slots: one row per (concurrency budget member, lease), with its expiry.

    The counters hold how many slots are taken; these rows say which lease
    holds each and until when, so an expired one is found and reclaimed, and a
    refusal can say when the soonest slot frees up.
    """

    def insert_slots(self, slots: Sequence[Slot]) -> None: ...
    def drop_slots(self, tenant: str, request_id: str) -> None: ...
    def extend_slots(self, tenant: str, request_id: str, expires_at: datetime) -> None: ...
    def soonest_slot(self, budget_key: str, member: str) -> datetime | None: ...
    def expired_slots(
        self, budget_key: str, member: str, now: datetime, limit: int
    ) -> list[tuple[str, str]]: ...


class Limiting(Protocol):
    """Rolling windows' buckets one by one, to say when enough leaves one (Retry-After):
    ``(bucket, used + reserved)`` of ``hit``'s counted buckets that hold any, oldest first."""

    def buckets(self, hit: Applied) -> list[tuple[int, int]]: ...


class Recording(Protocol):
    """Appending to the ledger, and the hourly rollup each entry adds to."""

    def append(self, event: Event) -> Event: ...
    def event(self, event_id: int) -> Event: ...
    def bump_rollup(self, key: RollupKey, values: Sequence[int]) -> None: ...


class Ledger(Recording, Protocol):
    """The ledger and its rollups read, corrected and trimmed."""

    def update_event(self, event: Event) -> None: ...
    def events(self, query: EventQuery) -> Iterable[Event]: ...
    def counting_events(self, tenant: str | None) -> Iterable[Event]: ...
    def delete_events(self, event_ids: Sequence[int]) -> None: ...
    def clear_rollups(self, from_hour: int | None) -> None: ...
    def rollups(
        self, tenant: str, since: int | None, until: int | None
    ) -> Iterable[tuple[RollupKey, Sequence[int]]]: ...


class Baseline(Protocol):
    """What archived events counted, kept so rebuilds still count it."""

    def baseline(self, keys: Sequence[str] | None) -> dict[Key, int]: ...
    def add_baseline(self, rows: Sequence[tuple[str, str, int, int]]) -> None: ...


class Meta(Protocol):
    """Small named values: the archive cut-off, shared secrets."""

    def meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def meta_default(self, key: str, value: str) -> str: ...


class Keys(Protocol):
    """API keys, stored hashed."""

    def insert_key(self, key: ApiKey, secret_hash: str) -> None: ...
    def key(self, key_id: str) -> tuple[ApiKey, str] | None: ...
    def keys(self, tenant: str | None) -> list[ApiKey]: ...
    def update_key(self, key: ApiKey) -> None: ...


class CallTx(
    Configured,
    Planning,
    Counting,
    Crediting,
    ToppingUp,
    Reserving,
    Leasing,
    Limiting,
    Recording,
    Protocol,
):
    """What authorize, commit, record and release use: all a group-commit batch serves."""


class SweepTx(CallTx, Reservations, Protocol):
    """Releasing expired reservations."""


class StatusTx(Configured, Planning, Counting, Crediting, ToppingUp, Protocol):
    """Reading where the applicable budgets stand."""


class BudgetTx(
    Config, Planning, Counters, Credits, TopUps, Reservations, Ledger, Baseline, Protocol
):
    """Writing budgets and rates, and recounting the counters they change."""


class MaintenanceTx(BudgetTx, Meta, Protocol):
    """Rebuilding, archiving and re-pricing the ledger."""


class Tx(MaintenanceTx, Keys, Leasing, Limiting, Protocol):
    """Everything a backend's transaction offers."""
