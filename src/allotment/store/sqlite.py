"""SQLite store: one file in WAL mode, safe for many threads and processes.

Every operation is one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's
single write lock before the first read. Reading counters, deciding and
reserving therefore happen with no other writer in between, in this process
or any other. Threads of one process queue on an in-process lock first and processes on an
``flock`` of ``<db>-writer.lock``, so writers wait in the kernel instead of in
SQLite's sleep-and-retry busy loop.

Durability: ``synchronous=NORMAL`` (default) survives a crash of the
process; ``?synchronous=full`` in the URL also survives power loss, at the
price of an fsync per transaction.

Checkpoints (copying the WAL back into the database file, with an fsync) run
in a background thread on a connection of their own, so no authorization
waits for one; the inline auto-checkpoint stays only as a far-off safety net.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from allotment.core.budgets import Budget
from allotment.core.engine import Applied, Counter
from allotment.core.fx import NO_RATES, FxRate, Rates
from allotment.core.keys import ApiKey
from allotment.core.ledger import Event, Reservation
from allotment.errors import ConfigurationError, StoreError
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
from allotment.store.base import EventQuery
from allotment.store.migrations.sqlite import MIGRATIONS

__all__ = ["SQLiteStore"]

_FILE_LOCKS: dict[str, threading.Lock] = {}
#: Inline checkpoints only if the background checkpointer fell this far behind.
_SAFETY_CHECKPOINT_PAGES = 50_000
_FILE_LOCKS_GUARD = threading.Lock()


class SQLiteStore(TransactionalStore):
    """A store in one SQLite file (``sqlite:///path.db``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, self._synchronous = _parse_url(url)
        key = str(Path(self.path).resolve())
        with _FILE_LOCKS_GUARD:
            self._write_lock = _FILE_LOCKS.setdefault(key, threading.Lock())
        self._file_lock = _FileLock(f"{self.path}-writer.lock")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._config_cache = Config(-1, {}, NO_RATES)
        self._migrate()
        self._checkpointer = _Checkpointer(self.path)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=60
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self._synchronous}")
                conn.execute(f"PRAGMA wal_autocheckpoint={_SAFETY_CHECKPOINT_PAGES}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
            self._local.conn = conn
            self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[Tx]:
        conn = self._connection()
        with self._write_lock, self._file_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite: {exc}") from exc
            try:
                yield _SQLiteTx(self, conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"SQLite: {exc}") from exc
                raise

    @contextmanager
    def _reading(self) -> Iterator[Tx]:
        """A snapshot read beside the writer: no write lock, no wait behind authorizations."""
        conn = self._connection()
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite: {exc}") from exc
        try:
            yield _SQLiteTx(self, conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite: {exc}") from exc
        finally:
            conn.execute("ROLLBACK")

    def _migrate(self) -> None:
        conn = self._connection()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
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
                        "INSERT INTO schema_migrations VALUES (?, ?, datetime('now'))",
                        (version, name),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def cached_budgets(self, tenant: str) -> Sequence[Budget] | None:
        """The budgets this process last loaded (for fail-open decisions when the file fails)."""
        return self._config_cache.cached(tenant)

    def schema_version(self) -> int:
        """The highest applied migration."""
        row = self._connection().execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        self._checkpointer.stop()
        self._file_lock.close()
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        self._local = threading.local()


class _FileLock:
    """An exclusive ``flock`` on a side file, taken around every write transaction.

    Writers in other processes then wait in the kernel and wake the moment
    the lock is free, instead of in SQLite's busy handler, which sleeps and
    retries on a growing schedule (up to 100 ms a try) and made tail latency
    with several service workers ten times the median.
    """

    def __init__(self, path: str) -> None:
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            self._fd = None  # a read-only directory: SQLite's own locking still holds

    def __enter__(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Checkpointer:
    """Runs passive WAL checkpoints every ``interval`` seconds in a daemon thread.

    Passive checkpoints never block writers; with several processes each runs
    one, and a checkpoint that finds another in progress simply skips.
    """

    def __init__(self, path: str, interval: float = 0.5) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="allotment-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    self.failures += 1
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _parse_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"not a SQLite URL: {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ConfigurationError(f"SQLite URL needs a path, as in sqlite:///allotment.db: {url!r}")
    if path == ":memory:":
        raise ConfigurationError("an in-memory SQLite database is per connection: use memory://")
    options = parse_qs(parts.query)
    synchronous = options.pop("synchronous", ["normal"])[-1].upper()
    if synchronous not in ("NORMAL", "FULL", "EXTRA"):
        raise ConfigurationError(f"synchronous must be normal, full or extra, got {synchronous!r}")
    if options:
        raise ConfigurationError(f"unknown SQLite URL option(s): {', '.join(sorted(options))}")
    return path, synchronous


class _SQLiteTx:
    """The ``Tx`` primitives on one connection inside ``BEGIN IMMEDIATE``."""

    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection) -> None:
        self._store = store
        self._conn = conn
        self._config: Config | None = None

    # budgets and exchange rates: configuration cached per process, checked per transaction
    def _configuration(self) -> Config:
        if self._config is not None:
            return self._config
        (version,) = self._conn.execute(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'config_version'"
        ).fetchone()
        config = self._store._config_cache
        if config.version != version:
            index: dict[str | None, list[Budget]] = {}
            for (spec,) in self._conn.execute("SELECT spec FROM budgets ORDER BY id"):
                budget = Budget.from_spec(json.loads(spec))
                index.setdefault(budget.tenant, []).append(budget)
            rows = self._conn.execute("SELECT source, target, rate, effective_from FROM fx_rates")
            rates = Rates(FxRate(s, t, Decimal(r), from_us(f)) for s, t, r, f in rows)
            config = self._store._config_cache = Config(version, index, rates)
        self._config = config
        return config

    def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        self._conn.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.tenant, key.role.value, key.name, secret_hash, to_us(key.created_at),
             None, None),
        )  # fmt: skip

    def key(self, key_id: str) -> tuple[ApiKey, str] | None:
        row = self._conn.execute(
            "SELECT id, tenant, role, name, created_at, revoked_at, last_used_at, secret_hash "
            "FROM api_keys WHERE id = ?",
            (key_id,),
        ).fetchone()
        return None if row is None else (key_from_row(row), row[7])

    def keys(self, tenant: str | None) -> list[ApiKey]:
        sql = "SELECT id, tenant, role, name, created_at, revoked_at, last_used_at FROM api_keys"
        rows = (
            self._conn.execute(sql + " ORDER BY created_at, id")
            if tenant is None
            else self._conn.execute(sql + " WHERE tenant = ? ORDER BY created_at, id", (tenant,))
        )
        return [key_from_row(row) for row in rows]

    def update_key(self, key: ApiKey) -> None:
        self._conn.execute(
            "UPDATE api_keys SET revoked_at = ?, last_used_at = ? WHERE id = ?",
            (opt_us(key.revoked_at), opt_us(key.last_used_at), key.id),
        )

    def _budget_index(self) -> dict[str | None, list[Budget]]:
        return self._configuration().budgets

    def rates(self) -> Rates:
        return self._configuration().rates

    def put_rate(self, rate: FxRate) -> None:
        self._conn.execute(
            "INSERT INTO fx_rates (source, target, effective_from, rate) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (source, target, effective_from) DO UPDATE SET rate = excluded.rate",
            (rate.source, rate.target, to_us(rate.effective_from), str(rate.rate)),
        )
        self._bump_config_version()

    def budgets_for(self, tenant: str) -> Sequence[Budget]:
        index = self._budget_index()
        return [*index.get(None, ()), *index.get(tenant, ())]

    def all_budgets(self, tenant: str | None) -> Sequence[Budget]:
        index = self._budget_index()
        if tenant is not None:
            return list(index.get(tenant, ()))
        return sorted((b for group in index.values() for b in group), key=lambda b: b.id)

    def budget(self, budget_id: str) -> Budget | None:
        row = self._conn.execute("SELECT spec FROM budgets WHERE id = ?", (budget_id,)).fetchone()
        return None if row is None else Budget.from_spec(json.loads(row[0]))

    def put_budget(self, budget: Budget) -> None:
        self._conn.execute(
            "INSERT INTO budgets (id, tenant, spec) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, spec = excluded.spec",
            (budget.id, budget.tenant, json.dumps(budget.to_spec())),
        )
        self._bump_config_version()

    def delete_budget(self, budget_id: str) -> None:
        self._conn.execute("DELETE FROM budgets WHERE id = ?", (budget_id,))
        self._conn.execute("DELETE FROM counter_baseline WHERE budget_id = ?", (budget_id,))
        self.clear_counters([budget_id])
        self._bump_config_version()

    def _bump_config_version(self) -> None:
        self._conn.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'"
        )

    # counters
    def read(self, applied: Sequence[Applied]) -> list[Counter]:
        if not applied:
            return []
        # One statement for every counter of the call: (budget, member) pairs
        # with their bucket ranges (a range is one bucket but for rolling windows).
        ranges = ", ".join("(?, ?, ?, ?)" for _ in applied)
        params = [v for a in applied
                  for v in (a.budget.id, a.member, a.span.first_bucket, a.span.bucket)]  # fmt: skip
        rows = self._conn.execute(
            f"WITH wanted (b, m, lo, hi) AS (VALUES {ranges}) "
            "SELECT b, m, COALESCE(SUM(used), 0), COALESCE(SUM(reserved), 0) FROM wanted "
            "LEFT JOIN counters ON budget_id = b AND member = m AND bucket BETWEEN lo AND hi "
            "GROUP BY b, m, lo, hi",
            params,
        ).fetchall()
        found = {(b, m): Counter(used, reserved) for b, m, used, reserved in rows}
        return [found[(a.budget.id, a.member)] for a in applied]

    def add(self, deltas: Sequence[Delta]) -> None:
        self._conn.executemany(
            "INSERT INTO counters (budget_id, member, bucket, used, reserved) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (budget_id, member, bucket) DO UPDATE SET "
            "used = used + excluded.used, reserved = reserved + excluded.reserved",
            deltas,
        )

    def clear_counters(self, budget_ids: Sequence[str] | None) -> None:
        if budget_ids is None:
            self._conn.execute("DELETE FROM counters")
        else:
            self._conn.executemany(
                "DELETE FROM counters WHERE budget_id = ?", [(b,) for b in budget_ids]
            )

    def all_counters(self) -> dict[tuple[str, str, int], tuple[int, int]]:
        rows = self._conn.execute(
            "SELECT budget_id, member, bucket, used, reserved FROM counters "
            "WHERE used != 0 OR reserved != 0"
        )
        return {(b, m, k): (u, r) for b, m, k, u, r in rows}

    # reservations
    def reservation(self, request_id: str) -> Reservation | None:
        row = self._conn.execute(
            "SELECT * FROM reservations WHERE request_id = ?", (request_id,)
        ).fetchone()
        return None if row is None else reservation_from_row(row)

    def insert_reservation(self, r: Reservation) -> None:
        self._conn.execute(
            "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                r.request_id,
                r.subject.tenant,
                r.state.value,
                r.payload_hash,
                r.commit_hash,
                r.event_id,
                subject_json(r.subject),
                r.provider,
                r.model,
                json.dumps(r.estimate.to_dict()),
                json.dumps(r.charges),
                to_us(r.authorized_at),
                to_us(r.expires_at),
            ),
        )

    def update_reservation(self, r: Reservation) -> None:
        self._conn.execute(
            "UPDATE reservations SET state = ?, commit_hash = ?, event_id = ? WHERE request_id = ?",
            (r.state.value, r.commit_hash, r.event_id, r.request_id),
        )

    def expired(self, now: datetime, limit: int) -> list[Reservation]:
        rows = self._conn.execute(
            "SELECT * FROM reservations WHERE state = 'held' AND expires_at <= ? "
            "ORDER BY expires_at LIMIT ?",
            (to_us(now), limit),
        )
        return [reservation_from_row(row) for row in rows]

    def held(self) -> Iterable[Reservation]:
        rows = self._conn.execute("SELECT * FROM reservations WHERE state = 'held'")
        return [reservation_from_row(row) for row in rows]

    # ledger
    def append(self, event: Event) -> Event:
        values = event_values(event)
        cursor = self._conn.execute(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS[1:])}) "
            f"VALUES ({', '.join('?' * (len(EVENT_COLUMNS) - 1))})",
            values,
        )
        return event.with_id(cursor.lastrowid or 0)

    def update_event(self, event: Event) -> None:
        self._conn.execute(
            "UPDATE events SET cost_micros = ?, price = ?, price_source = ? WHERE id = ?",
            (event.usage.cost_micros, json.dumps(event.price), event.price.get("source"), event.id),
        )

    def event(self, event_id: int) -> Event:
        row = self._conn.execute(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE id = ?", (event_id,)
        ).fetchone()
        return event_from_row(row)

    def events(self, query: EventQuery) -> Iterable[Event]:
        where: list[str] = ["id > ?"]
        params: list[object] = [query.after_id]
        if query.price_source in ("fallback", "missing"):
            # A literal lets SQLite prove the partial index events_flagged applies.
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
        rows = self._conn.execute(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE {' AND '.join(where)} "
            "ORDER BY id LIMIT ?",
            (*params, query.limit),
        )
        return [event_from_row(row) for row in rows]

    def counting_events(self, tenant: str | None) -> Iterable[Event]:
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE status IN ('success', 'error')"
        params: tuple[Any, ...] = ()
        if tenant is not None:
            sql += " AND tenant = ?"
            params = (tenant,)
        # Materialized first: the caller writes on this connection while iterating.
        return [event_from_row(row) for row in self._conn.execute(sql, params)]

    # rollups
    def bump_rollup(self, key: RollupKey, values: Sequence[int]) -> None:
        totals = ", ".join(f"{c} = {c} + excluded.{c}" for c in ("calls", *ROLLUP_TOTALS))
        self._conn.execute(
            f"INSERT INTO rollups VALUES ({', '.join('?' * (9 + len(values)))}) ON CONFLICT "
            "(tenant, hour, user, key, agent, feature, provider, model, status) "
            f"DO UPDATE SET {totals}",
            (*key, *values),
        )

    def clear_rollups(self, from_hour: int | None) -> None:
        self._conn.execute("DELETE FROM rollups WHERE hour >= ?", (from_hour or -(2**62),))

    # archive
    def baseline(self, budget_ids: Sequence[str] | None) -> dict[tuple[str, str, int], int]:
        sql = "SELECT budget_id, member, bucket, used FROM counter_baseline"
        if budget_ids is None:
            rows = self._conn.execute(sql).fetchall()
        else:
            marks = ", ".join("?" * len(budget_ids))
            rows = self._conn.execute(f"{sql} WHERE budget_id IN ({marks})", budget_ids).fetchall()
        return {(b, m, k): u for b, m, k, u in rows}

    def add_baseline(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        self._conn.executemany(
            "INSERT INTO counter_baseline VALUES (?, ?, ?, ?) ON CONFLICT "
            "(budget_id, member, bucket) DO UPDATE SET used = used + excluded.used",
            rows,
        )

    def delete_events(self, event_ids: Sequence[int]) -> None:
        self._conn.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in event_ids])

    def delete_finished_reservations(self, before: datetime) -> int:
        cursor = self._conn.execute(
            "DELETE FROM reservations WHERE state != 'held' AND authorized_at < ?",
            (to_us(before),),
        )
        return cursor.rowcount

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def rollups(
        self, tenant: str, since: int | None, until: int | None
    ) -> Iterable[tuple[RollupKey, Sequence[int]]]:
        rows = self._conn.execute(
            "SELECT * FROM rollups WHERE tenant = ? AND hour >= ? AND hour < ?",
            (tenant, -(2**62) if since is None else since, 2**62 if until is None else until),
        )
        return [(tuple(row[:9]), row[9:]) for row in rows]
