"""The ``Tx`` primitives SQLite and PostgreSQL write alike: one schema, one SQL text.

SQL here uses ``?`` placeholders (each dialect's ``_rows``, ``_run`` and
``_run_many`` adapt them) and quotes ``"user"``, which PostgreSQL reserves.
The dialects keep only what they really do differently: reading and adding
to counters, appending an event, and locking rows for a write.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from allotment.core.budgets import Budget
from allotment.core.engine import Applied, counted_range
from allotment.core.fx import NO_RATES, FxRate, Rates
from allotment.core.keys import ApiKey
from allotment.core.ledger import Event, Reservation
from allotment.core.plans import Assignment, Plan
from allotment.lifecycle.tx import ROLLUP_TOTALS, RollupKey, Slot
from allotment.store._rows import (
    ASSIGNMENT_COLUMNS,
    EVENT_COLUMNS,
    PLAN_COLUMNS,
    ROLLUP_COLUMNS,
    ROLLUP_KEY_COLUMNS,
    Config,
    assignment_from_row,
    assignment_values,
    dumps,
    event_from_row,
    from_us,
    key_from_row,
    opt_us,
    plan_from_spec,
    plan_values,
    plans_by_tenant,
    reservation_from_row,
    reservation_values,
    rollup_from_row,
    statements,
    to_us,
)
from allotment.store._sql_credits import SqlCredits
from allotment.store.base import EventQuery

__all__ = [
    "CONFIG_VERSION",
    "EVENT_INSERT",
    "EVENT_SELECT",
    "ROLLUP_ADD",
    "ROLLUP_KEY",
    "SqlConfig",
    "SqlTx",
    "reservation_update",
]

#: every column of events, in order (``"user"`` quoted)
EVENT_SELECT = ", ".join('"user"' if c == "user" else c for c in EVENT_COLUMNS)
#: an event without its id (the database assigns it)
EVENT_INSERT = (
    f"INSERT INTO events ({EVENT_SELECT.removeprefix('id, ')}) "
    f"VALUES ({', '.join('?' * (len(EVENT_COLUMNS) - 1))})"
)
RESERVATION_INSERT = f"INSERT INTO reservations VALUES ({', '.join('?' * 16)})"
RESERVATION_UPDATE = (
    "UPDATE reservations SET state = ?, commit_hash = ?, event_id = ?, expires_at = ? "
    "WHERE request_id = ? AND tenant = ?"
)
_KEY_COLUMNS = "id, tenant, role, name, created_at, revoked_at, last_used_at"
#: a rollup row's key columns, and how an insert adds to an existing row
ROLLUP_KEY = ", ".join(ROLLUP_KEY_COLUMNS)
ROLLUP_ADD = f"ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET " + ", ".join(
    f"{c} = rollups.{c} + excluded.{c}" for c in ("calls", *ROLLUP_TOTALS)
)
_PLAN_PUT = (
    f"INSERT INTO plans ({', '.join(PLAN_COLUMNS)}) VALUES ({', '.join('?' * len(PLAN_COLUMNS))}) "
    "ON CONFLICT (key) DO UPDATE SET spec = excluded.spec"
)
_ASSIGNMENT_SELECT = f"SELECT {', '.join(ASSIGNMENT_COLUMNS)} FROM plan_assignments"
_ASSIGNMENT_PUT = (
    f"INSERT INTO plan_assignments ({', '.join(ASSIGNMENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ASSIGNMENT_COLUMNS))}) ON CONFLICT (tenant, member) "
    f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in ASSIGNMENT_COLUMNS[2:])}"
)
_ROLLUP_UPSERT = (
    f"INSERT INTO rollups ({', '.join(ROLLUP_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ROLLUP_COLUMNS))}) {ROLLUP_ADD}"
)


def reservation_update(r: Reservation) -> tuple[Any, ...]:
    """The parameters of ``RESERVATION_UPDATE`` for ``r``."""
    return (
        r.state.value, r.commit_hash, r.event_id, to_us(r.expires_at), r.request_id,
        r.subject.tenant,
    )  # fmt: skip


class SqlConfig:
    """Budgets, plans and exchange rates as last loaded by this process, for every
    transaction."""

    def __init__(self) -> None:
        super().__init__()
        self._config_cache = Config(-1, {}, NO_RATES)
        self._config_lock = threading.Lock()

    def cached_budgets(self, tenant: str) -> Sequence[Budget] | None:
        """The budgets this process last loaded (for fail-open decisions when the store fails)."""
        return self._config_cache.cached(tenant)

    def _remember(self, config: Config) -> None:
        with self._config_lock:
            if config.version > self._config_cache.version:
                self._config_cache = config


#: the version of budgets, plans and rates: every change bumps it, so a cache knows it is stale
CONFIG_VERSION = "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'config_version'"


class SqlTx(SqlCredits):
    """The ``Tx`` primitives over one connection, in SQL both dialects understand (credit
    pools' and top-ups' in ``SqlCredits``)."""

    def __init__(self, store: SqlConfig) -> None:
        self._store = store
        self._config: Config | None = None
        #: whether this transaction changed the configuration (see ``_bump_config_version``)
        self._config_changed = False

    def clear_counters(self, keys: Sequence[str] | None) -> None:
        raise NotImplementedError

    def migrate(self, migrations: Sequence[tuple[int, str, str]]) -> None:
        """Apply, in order, the migrations ``schema_migrations`` does not list yet."""
        self._run(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = {v for (v,) in self._rows("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations:
            if version in done:
                continue
            for statement in statements(sql):
                self._run(statement)
            self._run(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                (version, name, datetime.now(UTC).isoformat()),
            )

    def schema_version(self) -> int:
        """The highest applied migration."""
        ((version,),) = self._rows("SELECT MAX(version) FROM schema_migrations")
        return int(version or 0)

    # budgets, plans and exchange rates: configuration cached per process, checked per
    # transaction
    def _configuration(self) -> Config:
        if self._config is not None:
            return self._config
        ((version,),) = self._rows(CONFIG_VERSION)
        return self.configure(version)

    def configure(self, version: int) -> Config:
        """Budgets, plans and rates as of config ``version`` (read by the caller), loaded
        if new."""
        config = self._store._config_cache
        if config.version != version or self._config_changed:
            config = self._load_config(version)
            if not self._config_changed:  # else not committed yet: this transaction's own
                self._store._remember(config)
        self._config = config
        return config

    def _load_config(self, version: int) -> Config:
        index: dict[str | None, list[Budget]] = {}
        for (spec,) in self._rows("SELECT spec FROM budgets"):  # Config puts them in_order
            budget = Budget.from_spec(json.loads(spec))
            index.setdefault(budget.tenant, []).append(budget)
        specs = self._rows("SELECT spec FROM plans")
        plans = plans_by_tenant(plan_from_spec(spec) for (spec,) in specs)
        rows = self._rows("SELECT source, target, rate, effective_from FROM fx_rates")
        rates = Rates(FxRate(s, t, Decimal(r), from_us(f)) for s, t, r, f in rows)
        return Config(version, index, rates, plans)

    def lock_config(self) -> None:
        # Bumping the version takes its row lock until commit (PostgreSQL); SQLite
        # holds the database's write lock already.
        self._bump_config_version()

    def _bump_config_version(self) -> None:
        self._run(
            "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) "
            "WHERE key = 'config_version'"
        )
        # From here on this transaction reads its own change (a recount resolves against
        # it), loaded afresh and kept from the process's cache until it commits.
        self._config, self._config_changed = None, True

    def rates(self) -> Rates:
        return self._configuration().rates

    def put_rate(self, rate: FxRate) -> None:
        self._run(
            "INSERT INTO fx_rates (source, target, effective_from, rate) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (source, target, effective_from) DO UPDATE SET rate = excluded.rate",
            (rate.source, rate.target, to_us(rate.effective_from), str(rate.rate)),
        )
        self._bump_config_version()

    def budgets_for(self, tenant: str) -> Sequence[Budget]:
        return self._configuration().budgets_for(tenant)

    def all_budgets(self, tenant: str | None) -> Sequence[Budget]:
        return self._configuration().all_budgets(tenant)

    def budget(self, key: str) -> Budget | None:
        rows = self._rows("SELECT spec FROM budgets WHERE key = ?", (key,))
        return Budget.from_spec(json.loads(rows[0][0])) if rows else None

    def budgets_named(self, budget_id: str) -> list[Budget]:
        rows = self._rows("SELECT spec FROM budgets WHERE id = ? ORDER BY key", (budget_id,))
        return [Budget.from_spec(json.loads(spec)) for (spec,) in rows]

    def put_budget(self, budget: Budget) -> None:
        self._run(
            "INSERT INTO budgets (key, id, tenant, spec) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET spec = excluded.spec",
            (budget.key, budget.id, budget.tenant, json.dumps(budget.to_spec())),
        )
        self._bump_config_version()

    def insert_budget(self, budget: Budget) -> bool:
        inserted = self._run(
            "INSERT INTO budgets (key, id, tenant, spec) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (budget.key, budget.id, budget.tenant, json.dumps(budget.to_spec())),
        )
        if inserted:
            self._bump_config_version()
        return inserted == 1

    def delete_budget(self, key: str) -> None:
        self._run("DELETE FROM budgets WHERE key = ?", (key,))
        self._run("DELETE FROM counter_baseline WHERE budget_key = ?", (key,))
        self.clear_counters([key])
        self._bump_config_version()

    # plans: configuration; assignments: read per call
    def plans_for(self, tenant: str) -> Sequence[Plan]:
        return self._configuration().plans_for(tenant)

    def all_plans(self, tenant: str | None) -> Sequence[Plan]:
        return self._configuration().all_plans(tenant)

    def plan(self, key: str) -> Plan | None:
        rows = self._rows("SELECT spec FROM plans WHERE key = ?", (key,))
        return plan_from_spec(rows[0][0]) if rows else None

    def put_plan(self, plan: Plan) -> None:
        self._run(_PLAN_PUT, plan_values(plan))
        self._bump_config_version()

    def delete_plan(self, key: str) -> None:
        # Its budgets' counters are its slots', which the tenant's other plans share: kept.
        if self._run("DELETE FROM plans WHERE key = ?", (key,)):
            self._bump_config_version()

    def assignment(self, tenant: str, member: str) -> Assignment | None:
        rows = self._rows(f"{_ASSIGNMENT_SELECT} WHERE tenant = ? AND member = ?", (tenant, member))
        return assignment_from_row(rows[0]) if rows else None

    def put_assignment(self, assignment: Assignment) -> None:
        self._run(_ASSIGNMENT_PUT, assignment_values(assignment))

    # keys
    def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        self._run(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
            (key.id, key.tenant, key.role.value, key.name, secret_hash, to_us(key.created_at)),
        )

    def key(self, key_id: str) -> tuple[ApiKey, str] | None:
        rows = self._rows(
            f"SELECT {_KEY_COLUMNS}, secret_hash FROM api_keys WHERE id = ?", (key_id,)
        )
        return (key_from_row(rows[0]), rows[0][7]) if rows else None

    def keys(self, tenant: str | None) -> list[ApiKey]:
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys"
        if tenant is None:
            rows = self._rows(sql + " ORDER BY created_at, id")
        else:
            rows = self._rows(sql + " WHERE tenant = ? ORDER BY created_at, id", (tenant,))
        return [key_from_row(row) for row in rows]

    def update_key(self, key: ApiKey) -> None:
        self._run(
            "UPDATE api_keys SET revoked_at = ?, last_used_at = ? WHERE id = ?",
            (opt_us(key.revoked_at), opt_us(key.last_used_at), key.id),
        )

    # counters
    def all_counters(self) -> dict[tuple[str, str, int], tuple[int, int]]:
        rows = self._rows(
            "SELECT budget_key, member, bucket, used, reserved FROM counters "
            "WHERE used != 0 OR reserved != 0"
        )
        return {(b, m, k): (u, r) for b, m, k, u, r in rows}

    def buckets(self, hit: Applied) -> list[tuple[int, int]]:
        rows = self._rows(
            "SELECT bucket, used + reserved FROM counters WHERE budget_key = ? AND member = ? "
            "AND bucket BETWEEN ? AND ? AND used + reserved != 0 ORDER BY bucket",
            (hit.budget.key, hit.member, *counted_range(hit.span)),
        )
        return [(int(bucket), int(amount)) for bucket, amount in rows]

    # leases' slots
    def insert_slots(self, slots: Sequence[Slot]) -> None:
        self._run_many(
            "INSERT INTO lease_slots (budget_key, member, tenant, request_id, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(b, m, t, r, to_us(x)) for b, m, t, r, x in slots],
        )

    def drop_slots(self, tenant: str, request_id: str) -> None:
        self._run(
            "DELETE FROM lease_slots WHERE tenant = ? AND request_id = ?", (tenant, request_id)
        )

    def extend_slots(self, tenant: str, request_id: str, expires_at: datetime) -> None:
        self._run(
            "UPDATE lease_slots SET expires_at = ? WHERE tenant = ? AND request_id = ?",
            (to_us(expires_at), tenant, request_id),
        )

    def soonest_slot(self, budget_key: str, member: str) -> datetime | None:
        ((soonest,),) = self._rows(
            "SELECT MIN(expires_at) FROM lease_slots WHERE budget_key = ? AND member = ?",
            (budget_key, member),
        )
        return None if soonest is None else from_us(soonest)

    def expired_slots(
        self, budget_key: str, member: str, now: datetime, limit: int
    ) -> list[tuple[str, str]]:
        rows = self._rows(
            "SELECT tenant, request_id FROM lease_slots WHERE budget_key = ? AND member = ? "
            "AND expires_at <= ? ORDER BY expires_at LIMIT ?",
            (budget_key, member, to_us(now), limit),
        )
        return [(tenant, request_id) for tenant, request_id in rows]

    # reservations
    def reservations(self, request_id: str) -> list[Reservation]:
        rows = self._rows(
            "SELECT * FROM reservations WHERE request_id = ?" + self._lock_rows, (request_id,)
        )
        return [reservation_from_row(row) for row in rows]

    def insert_reservation(self, r: Reservation) -> None:
        self._run(RESERVATION_INSERT, reservation_values(r))

    def update_reservation(self, r: Reservation) -> None:
        self._run(RESERVATION_UPDATE, reservation_update(r))

    def expired(self, now: datetime, limit: int) -> list[Reservation]:
        # SKIP LOCKED where rows are locked: concurrent sweepers (any instance)
        # split the work, and a reservation being committed is left to its commit.
        lock = f"{self._lock_rows} SKIP LOCKED" if self._lock_rows else ""
        rows = self._rows(
            "SELECT * FROM reservations WHERE state = 'held' AND expires_at <= ? "
            "ORDER BY expires_at LIMIT ?" + lock,
            (to_us(now), limit),
        )
        return [reservation_from_row(row) for row in rows]

    def held(self) -> Iterable[Reservation]:
        rows = self._rows("SELECT * FROM reservations WHERE state = 'held'")
        return [reservation_from_row(row) for row in rows]

    # ledger
    def update_event(self, event: Event) -> None:
        self._run(
            "UPDATE events SET cost_micros = ?, price = ?, price_source = ? WHERE id = ?",
            (event.usage.cost_micros, dumps(event.price), event.price.get("source"), event.id),
        )

    def event(self, event_id: int) -> Event:
        rows = self._rows(f"SELECT {EVENT_SELECT} FROM events WHERE id = ?", (event_id,))
        return event_from_row(rows[0])

    def events(self, query: EventQuery) -> Iterable[Event]:
        where: list[str] = ["id > ?"]
        params: list[object] = [query.after_id]
        if query.price_source in ("fallback", "missing"):
            # The partial indexes of flagged events apply: PostgreSQL proves it from
            # the literal, SQLite only from their own WHERE term, repeated verbatim.
            where.append("price_source IN ('fallback', 'missing')")
            where.append(f"price_source = '{query.price_source}'")
            query = replace(query, price_source=None)
        for clause, value in (
            ("tenant = ?", query.tenant),
            ("status = ?", None if query.status is None else query.status.value),
            ("price_source = ?", query.price_source),
            ("occurred_at >= ?", None if query.since is None else to_us(query.since)),
            ("occurred_at < ?", None if query.until is None else to_us(query.until)),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self._rows(
            f"SELECT {EVENT_SELECT} FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
            (*params, query.limit),
        )
        return [event_from_row(row) for row in rows]

    def counting_events(self, tenant: str | None) -> Iterable[Event]:
        # Materialized first: the caller writes on this connection while iterating.
        sql = f"SELECT {EVENT_SELECT} FROM events WHERE status IN ('success', 'error')"
        if tenant is None:
            return [event_from_row(row) for row in self._rows(sql)]
        return [event_from_row(row) for row in self._rows(sql + " AND tenant = ?", (tenant,))]

    # rollups
    def bump_rollup(self, key: RollupKey, values: Sequence[int]) -> None:
        self._run(_ROLLUP_UPSERT, (*key, *values))

    def clear_rollups(self, from_hour: int | None) -> None:
        self._run("DELETE FROM rollups WHERE hour >= ?", (from_hour or -(2**62),))

    def rollups(
        self, tenant: str, since: int | None, until: int | None
    ) -> Iterable[tuple[RollupKey, Sequence[int]]]:
        rows = self._rows(
            f"SELECT {', '.join(ROLLUP_COLUMNS)} FROM rollups "
            "WHERE tenant = ? AND hour >= ? AND hour < ?",
            (tenant, -(2**62) if since is None else since, 2**62 if until is None else until),
        )
        return [rollup_from_row(row) for row in rows]

    # archive
    def baseline(self, keys: Sequence[str] | None) -> dict[tuple[str, str, int], int]:
        sql = "SELECT budget_key, member, bucket, used FROM counter_baseline"
        if keys is None:
            rows = self._rows(sql)
        else:
            marks = ", ".join("?" * len(keys))
            rows = self._rows(f"{sql} WHERE budget_key IN ({marks})", keys)
        return {(b, m, k): u for b, m, k, u in rows}

    def add_baseline(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        # Sorted: rows are locked in the order every writer takes them.
        self._run_many(
            "INSERT INTO counter_baseline AS c VALUES (?, ?, ?, ?) "
            "ON CONFLICT (budget_key, member, bucket) DO UPDATE SET used = c.used + excluded.used",
            sorted(rows),
        )

    def delete_events(self, event_ids: Sequence[int]) -> None:
        self._run_many("DELETE FROM events WHERE id = ?", [(i,) for i in event_ids])

    def delete_finished_reservations(self, before: datetime) -> int:
        return self._run(
            "DELETE FROM reservations WHERE state != 'held' AND authorized_at < ?",
            (to_us(before),),
        )

    def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._run(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def meta_default(self, key: str, value: str) -> str:
        # Insert-if-absent, then read: of two processes racing, the second's insert
        # waits for the first's commit and does nothing, so both read the first's.
        self._run("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
        stored = self.meta(key)
        assert stored is not None
        return stored
