"""PostgreSQL store: many processes on many machines, one set of hard caps.

Every operation is one transaction at READ COMMITTED. Authorize takes the row
lock of every counter it may charge with one upsert whose rows are sorted by
(budget, member, bucket), reads them under that lock, decides, and writes the
reservation before committing: no other transaction can charge those counters
in between, and since every transaction locks counters in the same order (and
counters before rollups), two requests never wait on each other in a cycle.
Deadlocks that other orders could still cause (a budget change rebuilding
counters) and serialization failures are retried from the start, as is a
request id claimed by a concurrent transaction (the retry then replays it).

Reservations are locked when read for writing (``FOR UPDATE``), and the
sweeper takes expired ones with ``SKIP LOCKED``: any number of instances may
sweep at once and each reservation is released exactly once.

URL: ``postgresql://user@host:port/db`` plus, optionally, ``schema=NAME`` (all
tables live there; created if missing) and ``pool=N`` (connections per process,
default 10). Other query parameters go to libpq unchanged.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from allotment.config import redact_url
from allotment.core.budgets import Budget
from allotment.core.decisions import Decision
from allotment.core.engine import Applied, Counter
from allotment.core.fx import NO_RATES, FxRate, Rates
from allotment.core.keys import ApiKey
from allotment.core.ledger import CommitResult, Event, Reservation
from allotment.errors import ConfigurationError, StoreError
from allotment.store._batch import Batcher, BatchTx, Item
from allotment.store._ops import ROLLUP_TOTALS, Delta, RollupKey, Tx
from allotment.store._rows import (
    EVENT_COLUMNS,
    Config,
    event_from_row,
    event_values,
    from_us,
    key_from_row,
    opt_us,
    reservation_from_row,
    statements,
    subject_json,
    to_us,
)
from allotment.store._transactional import TransactionalStore
from allotment.store.base import AuthorizeRequest, CommitRequest, EventQuery
from allotment.store.migrations.postgres import MIGRATIONS

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.pq import TransactionStatus
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError(
        "PostgreSQL needs the postgres extra: pip install 'allotment[postgres]'"
    ) from exc

__all__ = ["PostgresStore"]

T = TypeVar("T")
#: Errors after which the whole transaction is simply run again.
_RETRY = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
_ATTEMPTS = 20
#: Serializes schema migrations of concurrently starting instances.
_MIGRATION_LOCK = 0x616C6C6F746D6E74  # "allotmnt"
_EVENT_SELECT = ", ".join('"user"' if c == "user" else c for c in EVENT_COLUMNS)
_EVENT_INSERT = (
    f"INSERT INTO events ({_EVENT_SELECT.removeprefix('id, ')}) "
    f"VALUES ({', '.join(['%s'] * (len(EVENT_COLUMNS) - 1))}) RETURNING id"
)
_EVENT_INSERT_WITH_ID = (
    f"INSERT INTO events ({_EVENT_SELECT}) VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))})"
)
_RESERVATION_INSERT = f"INSERT INTO reservations VALUES ({', '.join(['%s'] * 13)})"
_RESERVATION_UPDATE = (
    "UPDATE reservations SET state = %s, commit_hash = %s, event_id = %s WHERE request_id = %s"
)
_ROLLUP_KEY = 'tenant, hour, "user", key, agent, feature, provider, model, status'
_ROLLUP_UPSERT = (
    f"INSERT INTO rollups VALUES ({', '.join(['%s'] * (10 + len(ROLLUP_TOTALS)))}) "
    f"ON CONFLICT ({_ROLLUP_KEY}) DO UPDATE SET "
    + ", ".join(f"{c} = rollups.{c} + excluded.{c}" for c in ("calls", *ROLLUP_TOTALS))
)
#: Lock (creating if missing) and read counter rows, in one sorted statement.
_LOCK_COUNTERS = (
    "INSERT INTO counters AS c (budget_id, member, bucket) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS t(b, m, k) ORDER BY b, m, k "
    "ON CONFLICT (budget_id, member, bucket) DO UPDATE SET used = c.used "
    "RETURNING budget_id, member, bucket, used, reserved"
)
_ADD_COUNTERS = (
    "INSERT INTO counters AS c (budget_id, member, bucket, used, reserved) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[]) "
    "AS t(b, m, k, u, r) ORDER BY b, m, k "
    "ON CONFLICT (budget_id, member, bucket) DO UPDATE SET "
    "used = c.used + excluded.used, reserved = c.reserved + excluded.reserved"
)


class PostgresStore(TransactionalStore):
    """A store in one PostgreSQL database (``postgresql://…``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conninfo, self.schema, size = _parse_url(url)
        self._config_cache = Config(-1, {}, NO_RATES)
        self._config_lock = threading.Lock()
        options: dict[str, Any] = {"autocommit": True, "prepare_threshold": 2}
        if self.schema is not None:
            options["options"] = f"-c search_path={self.schema}"
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.conninfo, min_size=1, max_size=size, kwargs=options, open=False, timeout=10
        )
        try:
            self._pool.open(wait=True, timeout=10)
        except (PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}") from exc
        self._migrate()
        self._batcher = Batcher(self._run_batch)
        #: batches of more than one call run, and how many had to re-run call by call
        self.batches = self.batch_fallbacks = 0

    #: calls wait on the network: the service runs them in threads so they can batch
    blocking = True

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
        """Run ``items`` as one transaction; if that fails in any way, each on its own."""
        if len(items) > 1:
            self.batches += 1
            try:
                results = self._once(items)
            except Exception:  # whatever it was, each call run on its own will say
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
        """``items`` as one transaction, database errors raised as they are.

        The buffered writes and the COMMIT go out as one pipeline: one round
        trip, so the batch holds its locks for as short a time as it can.
        """
        with self._pool.connection() as conn:
            conn.execute("BEGIN")
            try:
                batch = BatchTx(_PostgresTx(self, conn, locking=True), items)
                results = [item.run(batch) for item in items]
                with conn.pipeline():
                    batch.flush()
                    conn.execute("COMMIT")
                return results
            except BaseException:
                if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                raise

    # transactions
    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreError(f"PostgreSQL: no connection available: {exc}") from exc
        except psycopg.Error as exc:
            if _retryable(exc):
                raise
            raise StoreError(f"PostgreSQL: {exc}") from exc

    def _write(self, operation: Callable[[Tx], T]) -> T:
        for attempt in range(_ATTEMPTS):
            try:
                with self._connection() as conn:
                    return self._attempt(conn, operation, "BEGIN", locking=True)
            except psycopg.Error as exc:
                if attempt == _ATTEMPTS - 1:
                    raise StoreError(f"PostgreSQL: still conflicting after retries: {exc}") from exc
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise AssertionError("unreachable")

    def _read(self, operation: Callable[[Tx], T]) -> T:
        with self._connection() as conn:
            return self._attempt(
                conn, operation, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", locking=False
            )

    def _attempt(
        self, conn: psycopg.Connection[Any], operation: Callable[[Tx], T], begin: str, locking: bool
    ) -> T:
        conn.execute(begin)
        try:
            result = operation(_PostgresTx(self, conn, locking))
            conn.execute("COMMIT")
            return result
        except BaseException:
            if not conn.closed:
                conn.execute("ROLLBACK")
            raise

    # schema
    def _migrate(self) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            if self.schema is not None:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (%s, %s, now()::text)", (version, name)
                )

    def schema_version(self) -> int:
        """The highest applied migration."""
        with self._connection() as conn:
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0) if row else 0

    def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (tests; never the public schema)."""
        if self.schema is None:
            raise ConfigurationError("refusing to drop a store without its own schema")
        with self._connection() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def cached_budgets(self, tenant: str) -> Sequence[Budget] | None:
        """The budgets this process last loaded (for fail-open decisions when PostgreSQL fails)."""
        return self._config_cache.cached(tenant)

    def close(self) -> None:
        self._batcher.close()
        self._pool.close()


def _parse_url(url: str) -> tuple[str, str | None, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a PostgreSQL URL: {redact_url(url)}")
    query = parse_qsl(parts.query)
    schema: str | None = None
    size = 10
    rest = []
    for name, value in query:
        if name == "schema":
            if not value.replace("_", "").isalnum() or not value.isascii():
                raise ConfigurationError(f"schema must be letters, digits and _, got {value!r}")
            schema = value.lower()
        elif name == "pool":
            if not value.isdigit() or not 1 <= int(value) <= 1000:
                raise ConfigurationError(f"pool must be a whole number 1-1000, got {value!r}")
            size = int(value)
        else:
            rest.append((name, value))
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), ""))
    return conninfo, schema, size


def _reservation_values(r: Reservation) -> tuple[Any, ...]:
    return (
        r.request_id, r.subject.tenant, r.state.value, r.payload_hash, r.commit_hash, r.event_id,
        subject_json(r.subject), r.provider, r.model, json.dumps(r.estimate.to_dict()),
        json.dumps(r.charges), to_us(r.authorized_at), to_us(r.expires_at),
    )  # fmt: skip


def _reservation_update(r: Reservation) -> tuple[Any, ...]:
    return (r.state.value, r.commit_hash, r.event_id, r.request_id)


def _retryable(exc: psycopg.Error) -> bool:
    """A conflict with a concurrent transaction that running again resolves.

    A request id claimed meanwhile by another transaction is one: the retry
    finds its reservation and replays or refuses it as a conflict.
    """
    if isinstance(exc, pg_errors.UniqueViolation):
        return exc.diag.constraint_name == "reservations_pkey"
    return isinstance(exc, _RETRY)


class _PostgresTx:
    """The ``Tx`` primitives on one connection inside one transaction."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any], locking: bool) -> None:
        self._store = store
        self._conn = conn
        self._locking = locking
        self._config: Config | None = None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, params)

    # budgets and exchange rates: configuration cached per process, checked per transaction
    def _configuration(self) -> Config:
        if self._config is not None:
            return self._config
        ((version,),) = self._rows(
            "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'config_version'"
        )
        config = self._store._config_cache
        if config.version != version:
            index: dict[str | None, list[Budget]] = {}
            for (spec,) in self._rows("SELECT spec FROM budgets ORDER BY id"):
                budget = Budget.from_spec(json.loads(spec))
                index.setdefault(budget.tenant, []).append(budget)
            rows = self._rows("SELECT source, target, rate, effective_from FROM fx_rates")
            rates = Rates(FxRate(s, t, Decimal(r), from_us(f)) for s, t, r, f in rows)
            config = Config(version, index, rates)
            with self._store._config_lock:
                if config.version > self._store._config_cache.version:
                    self._store._config_cache = config
        self._config = config
        return config

    def _bump_config_version(self) -> None:
        self._run(
            "UPDATE meta SET value = (CAST(value AS BIGINT) + 1)::text WHERE key = 'config_version'"
        )

    def rates(self) -> Rates:
        return self._configuration().rates

    def put_rate(self, rate: FxRate) -> None:
        self._run(
            "INSERT INTO fx_rates (source, target, effective_from, rate) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (source, target, effective_from) DO UPDATE SET rate = excluded.rate",
            (rate.source, rate.target, to_us(rate.effective_from), str(rate.rate)),
        )
        self._bump_config_version()

    def budgets_for(self, tenant: str) -> Sequence[Budget]:
        index = self._configuration().budgets
        return [*index.get(None, ()), *index.get(tenant, ())]

    def all_budgets(self, tenant: str | None) -> Sequence[Budget]:
        index = self._configuration().budgets
        if tenant is not None:
            return list(index.get(tenant, ()))
        return sorted((b for group in index.values() for b in group), key=lambda b: b.id)

    def budget(self, budget_id: str) -> Budget | None:
        rows = self._rows("SELECT spec FROM budgets WHERE id = %s", (budget_id,))
        return Budget.from_spec(json.loads(rows[0][0])) if rows else None

    def put_budget(self, budget: Budget) -> None:
        self._run(
            "INSERT INTO budgets (id, tenant, spec) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, spec = excluded.spec",
            (budget.id, budget.tenant, json.dumps(budget.to_spec())),
        )
        self._bump_config_version()

    def delete_budget(self, budget_id: str) -> None:
        self._run("DELETE FROM budgets WHERE id = %s", (budget_id,))
        self._run("DELETE FROM counter_baseline WHERE budget_id = %s", (budget_id,))
        self.clear_counters([budget_id])
        self._bump_config_version()

    # keys
    def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        self._run(
            "INSERT INTO api_keys VALUES (%s, %s, %s, %s, %s, %s, NULL, NULL)",
            (key.id, key.tenant, key.role.value, key.name, secret_hash, to_us(key.created_at)),
        )

    def key(self, key_id: str) -> tuple[ApiKey, str] | None:
        rows = self._rows(
            "SELECT id, tenant, role, name, created_at, revoked_at, last_used_at, secret_hash "
            "FROM api_keys WHERE id = %s",
            (key_id,),
        )
        return (key_from_row(rows[0]), rows[0][7]) if rows else None

    def keys(self, tenant: str | None) -> list[ApiKey]:
        if self._locking:
            # A writer that lists keys decides on what it saw (the first key of a
            # new database): no other writer may add one until it commits.
            self._run("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE")
        sql = "SELECT id, tenant, role, name, created_at, revoked_at, last_used_at FROM api_keys"
        if tenant is None:
            rows = self._rows(sql + " ORDER BY created_at, id")
        else:
            rows = self._rows(sql + " WHERE tenant = %s ORDER BY created_at, id", (tenant,))
        return [key_from_row(row) for row in rows]

    def update_key(self, key: ApiKey) -> None:
        self._run(
            "UPDATE api_keys SET revoked_at = %s, last_used_at = %s WHERE id = %s",
            (opt_us(key.revoked_at), opt_us(key.last_used_at), key.id),
        )

    # counters
    def read(self, applied: Sequence[Applied]) -> list[Counter]:
        if not applied:
            return []
        current: dict[tuple[str, str, int], tuple[int, int]] = {}
        if self._locking:
            keys = sorted({(a.budget.id, a.member, a.span.bucket) for a in applied})
            for b, m, k, used, reserved in self._rows(
                _LOCK_COUNTERS, [[x[0] for x in keys], [x[1] for x in keys], [x[2] for x in keys]]
            ):
                current[(b, m, k)] = (used, reserved)
        out = []
        for hit in applied:
            last = hit.span.bucket
            used, reserved = current.get((hit.budget.id, hit.member, last), (0, 0))
            if not self._locking or hit.span.first_bucket < last:
                # Earlier buckets of a rolling window (or a plain read): summed, not locked.
                top = last if not self._locking else last - 1
                ((u, r),) = self._rows(
                    "SELECT COALESCE(SUM(used), 0), COALESCE(SUM(reserved), 0) FROM counters "
                    "WHERE budget_id = %s AND member = %s AND bucket BETWEEN %s AND %s",
                    (hit.budget.id, hit.member, hit.span.first_bucket, top),
                )
                used, reserved = used + int(u), reserved + int(r)
            out.append(Counter(used, reserved))
        return out

    def add(self, deltas: Sequence[Delta]) -> None:
        merged: dict[tuple[str, str, int], list[int]] = {}
        for budget_id, member, bucket, used, reserved in deltas:
            row = merged.setdefault((budget_id, member, bucket), [0, 0])
            row[0] += used
            row[1] += reserved
        rows = [(*k, u, r) for k, (u, r) in merged.items() if u or r]
        if rows:
            self._run(_ADD_COUNTERS, [list(column) for column in zip(*rows, strict=True)])

    # batches (see allotment.store._batch)
    def lock_counters(
        self, keys: Sequence[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], tuple[int, int]]:
        if not keys:
            return {}
        rows = self._rows(_LOCK_COUNTERS, [[k[0] for k in keys], [k[1] for k in keys],
                                           [k[2] for k in keys]])  # fmt: skip
        return {(b, m, k): (used, reserved) for b, m, k, used, reserved in rows}

    def lock_reservations(self, request_ids: Sequence[str]) -> dict[str, Reservation]:
        rows = self._rows(
            "SELECT * FROM reservations WHERE request_id = ANY(%s) ORDER BY request_id FOR UPDATE",
            (list(request_ids),),
        )
        return {row[0]: reservation_from_row(row) for row in rows}

    def next_event_ids(self, count: int) -> list[int]:
        rows = self._rows(
            "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, %s)",
            (count,),
        )
        return [row[0] for row in rows]

    def insert_events(self, events: Sequence[Event]) -> None:
        if events:
            with self._conn.cursor() as cursor:
                cursor.executemany(
                    _EVENT_INSERT_WITH_ID, [(e.id, *event_values(e)) for e in events]
                )

    def upsert_reservations(
        self, inserts: Sequence[Reservation], updates: Sequence[Reservation]
    ) -> None:
        with self._conn.cursor() as cursor:
            if inserts:
                cursor.executemany(_RESERVATION_INSERT, [_reservation_values(r) for r in inserts])
            if updates:
                cursor.executemany(_RESERVATION_UPDATE, [_reservation_update(r) for r in updates])

    def clear_counters(self, budget_ids: Sequence[str] | None) -> None:
        # Wait for every transaction that has charged a counter, and hold new
        # ones off: the recount that follows then sees a settled ledger.
        self._run("LOCK TABLE counters IN SHARE ROW EXCLUSIVE MODE")
        if budget_ids is None:
            self._run("DELETE FROM counters")
        else:
            self._run("DELETE FROM counters WHERE budget_id = ANY(%s)", (list(budget_ids),))

    def all_counters(self) -> dict[tuple[str, str, int], tuple[int, int]]:
        rows = self._rows(
            "SELECT budget_id, member, bucket, used, reserved FROM counters "
            "WHERE used != 0 OR reserved != 0"
        )
        return {(b, m, k): (u, r) for b, m, k, u, r in rows}

    # reservations
    def reservation(self, request_id: str) -> Reservation | None:
        lock = " FOR UPDATE" if self._locking else ""
        rows = self._rows("SELECT * FROM reservations WHERE request_id = %s" + lock, (request_id,))
        return reservation_from_row(rows[0]) if rows else None

    def insert_reservation(self, r: Reservation) -> None:
        self._run(_RESERVATION_INSERT, _reservation_values(r))

    def update_reservation(self, r: Reservation) -> None:
        self._run(_RESERVATION_UPDATE, _reservation_update(r))

    def expired(self, now: datetime, limit: int) -> list[Reservation]:
        # SKIP LOCKED: concurrent sweepers (any instance) split the work, and a
        # reservation being committed right now is left to its commit.
        rows = self._rows(
            "SELECT * FROM reservations WHERE state = 'held' AND expires_at <= %s "
            "ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (to_us(now), limit),
        )
        return [reservation_from_row(row) for row in rows]

    def held(self) -> Iterable[Reservation]:
        rows = self._rows("SELECT * FROM reservations WHERE state = 'held'")
        return [reservation_from_row(row) for row in rows]

    # ledger
    def append(self, event: Event) -> Event:
        ((event_id,),) = self._rows(_EVENT_INSERT, event_values(event))
        return event.with_id(event_id)

    def update_event(self, event: Event) -> None:
        self._run(
            "UPDATE events SET cost_micros = %s, price = %s, price_source = %s WHERE id = %s",
            (event.usage.cost_micros, json.dumps(event.price), event.price.get("source"), event.id),
        )

    def event(self, event_id: int) -> Event:
        rows = self._rows(f"SELECT {_EVENT_SELECT} FROM events WHERE id = %s", (event_id,))
        return event_from_row(rows[0])

    def events(self, query: EventQuery) -> Iterable[Event]:
        where: list[str] = ["id > %s"]
        params: list[object] = [query.after_id]
        for clause, value in (
            ("tenant = %s", query.tenant),
            ("status = %s", None if query.status is None else query.status.value),
            ("price_source = %s", query.price_source),
            ("occurred_at >= %s", None if query.since is None else to_us(query.since)),
            ("occurred_at < %s", None if query.until is None else to_us(query.until)),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self._rows(
            f"SELECT {_EVENT_SELECT} FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT %s",
            (*params, query.limit),
        )
        return [event_from_row(row) for row in rows]

    def counting_events(self, tenant: str | None) -> Iterable[Event]:
        sql = f"SELECT {_EVENT_SELECT} FROM events WHERE status IN ('success', 'error')"
        if tenant is None:
            return [event_from_row(row) for row in self._rows(sql)]
        return [event_from_row(row) for row in self._rows(sql + " AND tenant = %s", (tenant,))]

    # rollups
    def bump_rollup(self, key: RollupKey, values: Sequence[int]) -> None:
        self._run(_ROLLUP_UPSERT, (*key, *values))

    def clear_rollups(self, from_hour: int | None) -> None:
        self._run("DELETE FROM rollups WHERE hour >= %s", (from_hour or -(2**62),))

    # archive
    def baseline(self, budget_ids: Sequence[str] | None) -> dict[tuple[str, str, int], int]:
        sql = "SELECT budget_id, member, bucket, used FROM counter_baseline"
        if budget_ids is None:
            rows = self._rows(sql)
        else:
            rows = self._rows(sql + " WHERE budget_id = ANY(%s)", (list(budget_ids),))
        return {(b, m, k): u for b, m, k, u in rows}

    def add_baseline(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        if rows:
            self._run(
                "INSERT INTO counter_baseline AS c SELECT * FROM unnest(%s::text[], %s::text[], "
                "%s::bigint[], %s::bigint[]) AS t(b, m, k, u) ORDER BY b, m, k "
                "ON CONFLICT (budget_id, member, bucket) "
                "DO UPDATE SET used = c.used + excluded.used",
                [list(column) for column in zip(*rows, strict=True)],
            )

    def delete_events(self, event_ids: Sequence[int]) -> None:
        self._run("DELETE FROM events WHERE id = ANY(%s)", (list(event_ids),))

    def delete_finished_reservations(self, before: datetime) -> int:
        cursor = self._conn.execute(
            "DELETE FROM reservations WHERE state != 'held' AND authorized_at < %s",
            (to_us(before),),
        )
        return cursor.rowcount

    def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = %s", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._run(
            "INSERT INTO meta VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def rollups(
        self, tenant: str, since: int | None, until: int | None
    ) -> Iterable[tuple[RollupKey, Sequence[int]]]:
        rows = self._rows(
            "SELECT * FROM rollups WHERE tenant = %s AND hour >= %s AND hour < %s",
            (tenant, -(2**62) if since is None else since, 2**62 if until is None else until),
        )
        return [(tuple(row[:9]), row[9:]) for row in rows]
