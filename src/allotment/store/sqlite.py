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

Connections: one writer (writes are serialized anyway) and a few readers
shared by every thread, so a service's thread pool of dozens of threads
keeps a handful of page caches, not one per thread.

Checkpoints (copying the WAL back into the database file, with an fsync) run
in a background thread on a connection of their own, so no authorization
waits for one; the inline auto-checkpoint stays only as a far-off safety net.
Readers that never stop keep a passive checkpoint from ever finishing, so
when the WAL passes ``_WAL_LIMIT`` the checkpointer truncates it instead.

Every SQLite failure reaches the caller as ``StoreError`` (the database
cannot be written: a full disk, an I/O error), or as ``InvalidData`` for a
value SQLite will not keep; a transaction that fails leaves nothing behind.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from allotment.core.credits import GRANT_SEPARATOR, Grant, debt_key
from allotment.core.engine import Applied, Counter, counted_range
from allotment.core.ledger import Event
from allotment.errors import AllotmentError, ConfigurationError, InvalidData, StoreError
from allotment.lifecycle.tx import Delta, Key
from allotment.store._rows import GRANT_COLUMNS, event_values, grant_from_row
from allotment.store._sql import EVENT_INSERT, SqlConfig, SqlTx
from allotment.store._transactional import GroupCommitStore
from allotment.store.migrations.sqlite import MIGRATIONS

__all__ = ["SQLiteStore"]

try:
    from fcntl import LOCK_EX, LOCK_NB, LOCK_UN, flock

    _HAS_FLOCK = True
except ImportError:  # Windows has no flock; SQLite's own locking still holds
    _HAS_FLOCK = False

_FILE_LOCKS: dict[str, threading.Lock] = {}
#: Inline checkpoints only if the background checkpointer fell this far behind.
_SAFETY_CHECKPOINT_PAGES = 50_000
#: The WAL is truncated back to this after a checkpoint, and forced back past it.
_WAL_LIMIT = 32 * 1024 * 1024
#: Read connections shared by all threads; more readers wait for one to be free.
_READERS = 4
_FILE_LOCKS_GUARD = threading.Lock()
#: What SQLite (or the binding of a parameter) raises for a value, not for the store.
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError)
_ERRORS = (sqlite3.Error, OverflowError)
_ZERO = Counter()
#: a pool member's grants with their counters (``grant_key``: pool, separator, id),
#: then its debt counter, if any
_HELD_GRANTS = (
    f"SELECT {', '.join('g.' + c for c in GRANT_COLUMNS)}, c.used, c.reserved FROM grants g "
    f"LEFT JOIN counters c ON c.budget_key = g.pool || '{GRANT_SEPARATOR}' || g.id "
    "AND c.member = g.member AND c.bucket = 0 WHERE g.pool = ? AND g.member = ? "
    f"UNION ALL SELECT {', '.join('NULL' for _ in GRANT_COLUMNS)}, used, reserved "
    "FROM counters WHERE budget_key = ? AND member = ? AND bucket = 0"
)


class SQLiteStore(SqlConfig, GroupCommitStore):
    """A store in one SQLite file (``sqlite:///path.db``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, self._synchronous = _parse_url(url)
        key = str(Path(self.path).resolve())
        with _FILE_LOCKS_GUARD:
            self._write_lock = _FILE_LOCKS.setdefault(key, threading.Lock())
        self._file_lock = _FileLock(f"{self.path}-writer.lock")
        #: the one write connection, used only under the write lock (None: open on next use)
        self._writer: sqlite3.Connection | None = None
        self._readers = _Readers(self._open, _READERS)
        super().__init__()
        self._migrate()
        self._checkpointer = _Checkpointer(self.path, self._write_lock, self._file_lock)

    def _open(self) -> sqlite3.Connection:
        """A new connection, or StoreError when the database cannot be opened."""
        conn = None
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint={_SAFETY_CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        return conn

    def _batch_on_loop(self) -> Callable[[], bool]:
        # A free write lock: the batch takes a few hundred µs, less than a hand-off
        # to the batch thread costs. A held one (another worker's batch, a rebuild
        # or archive in another process): the batch thread waits, the loop does not.
        return lambda: not self._write_lock.locked() and self._file_lock.free()

    @contextmanager
    def _transaction(self) -> Iterator[_SQLiteTx]:
        with self._write_lock, self._file_lock:
            conn = self._writer or self._open_writer()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield _SQLiteTx(self, conn)
                conn.execute("COMMIT")
            except _ERRORS as exc:
                self._roll_back(conn)
                raise _error(exc) from exc
            except BaseException:
                self._roll_back(conn)
                raise

    def _open_writer(self) -> sqlite3.Connection:
        self._writer = self._open()
        return self._writer

    def _roll_back(self, conn: sqlite3.Connection) -> None:
        """Undo what is left of a failed transaction, without raising.

        The error that failed the transaction is the one to report. SQLite has
        already rolled back after some (a full disk, an I/O error), and a
        ROLLBACK then would fail; a connection that cannot roll back is closed,
        and the next transaction opens a fresh one.
        """
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._writer = None
            with suppress(sqlite3.Error):
                conn.close()

    @contextmanager
    def _reading(self) -> Iterator[_SQLiteTx]:
        """A snapshot read beside the writer: no write lock, no wait behind authorizations."""
        conn = self._readers.take()
        try:
            conn.execute("BEGIN")
            yield _SQLiteTx(self, conn)
        except _ERRORS as exc:
            raise _error(exc) from exc
        finally:
            self._readers.give_back(conn)

    def _migrate(self) -> None:
        with self._transaction() as tx:
            tx.migrate(MIGRATIONS)

    def schema_version(self) -> int:
        """The highest applied migration."""
        with self._reading() as tx:
            return tx.schema_version()

    def close(self) -> None:
        super().close()
        self._checkpointer.stop()
        self._file_lock.close()
        with self._write_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self._readers.close()


def _error(exc: sqlite3.Error | OverflowError) -> AllotmentError:
    """allotment's error for what SQLite raised: bad data, or a store that failed."""
    if isinstance(exc, _DATA_ERRORS):
        return InvalidData("request", f"SQLite refused a value: {exc}")
    return StoreError(f"SQLite: {exc}")


class _Readers:
    """At most ``size`` read connections, shared by every thread.

    A connection per thread cost a page cache per thread: a service worker's
    40 read threads grew it from 65 to 150 MB. Readers wait only for each
    other, never for the writer. Each slot holds its connection, or None
    until a read needs one (a C queue: a read pays well under a microsecond).
    """

    def __init__(self, open_connection: Callable[[], sqlite3.Connection], size: int) -> None:
        self._open = open_connection
        self._size = size
        self._slots: queue.SimpleQueue[sqlite3.Connection | None] = queue.SimpleQueue()
        for _ in range(size):
            self._slots.put(None)

    def take(self) -> sqlite3.Connection:
        """A connection of a free slot; waits while every slot is in use."""
        conn = self._slots.get()
        if conn is None:
            try:
                conn = self._open()
            except BaseException:
                self._slots.put(None)
                raise
        return conn

    def give_back(self, conn: sqlite3.Connection) -> None:
        """End the read on ``conn`` and free its slot; a read that cannot end closes it."""
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                conn.close()
                self._slots.put(None)
                return
        self._slots.put(conn)

    def close(self) -> None:
        """Close the idle connections; their slots open new ones if reads follow."""
        for _ in range(self._size):
            try:
                conn = self._slots.get_nowait()
            except queue.Empty:
                return
            if conn is not None:
                conn.close()
            self._slots.put(None)


class _FileLock:
    """An exclusive ``flock`` on a side file, taken around every write transaction.

    Writers in other processes then wait in the kernel and wake the moment
    the lock is free, instead of in SQLite's busy handler, which sleeps and
    retries on a growing schedule (up to 100 ms a try) and made tail latency
    with several service workers ten times the median.
    """

    def __init__(self, path: str) -> None:
        self._fd: int | None = None  # without it, SQLite's own locking still holds
        if not _HAS_FLOCK:
            return
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            pass  # a read-only directory

    def __enter__(self) -> None:
        if self._fd is not None:
            flock(self._fd, LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            flock(self._fd, LOCK_UN)

    def free(self) -> bool:
        """Whether no other process holds the lock right now."""
        if self._fd is None:
            return True
        try:
            flock(self._fd, LOCK_EX | LOCK_NB)
        except BlockingIOError:
            return False
        flock(self._fd, LOCK_UN)
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Checkpointer:
    """Runs WAL checkpoints every ``interval`` seconds in a daemon thread.

    Passive checkpoints never block writers; with several processes each runs
    one, and a checkpoint that finds another in progress simply skips. But
    while any reader holds an old snapshot a passive checkpoint cannot reach
    the end of the WAL, so under steady reads and writes the WAL is never
    restarted and grew past 100 MB. Past ``limit`` bytes the checkpointer
    therefore takes the write lock (writers wait for it in the kernel, as for
    each other), waits for the readers of old snapshots, copies everything
    back and truncates the WAL to zero.
    """

    def __init__(
        self,
        path: str,
        write_lock: threading.Lock,
        file_lock: _FileLock,
        interval: float = 0.5,
        limit: int = _WAL_LIMIT,
    ) -> None:
        self._path = path
        self._locks = (write_lock, file_lock)
        self._interval = interval
        self.limit = limit
        self._stop = threading.Event()
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="allotment-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # A truncation waits for readers of old snapshots at most this long (writers
        # wait meanwhile); one that finds them still busy copies what it can and
        # tries again next time.
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=0.1
        )
        try:
            while not self._stop.wait(self._interval):
                try:
                    self._checkpoint(conn)
                except sqlite3.Error:
                    self.failures += 1
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        if self._wal_size() <= self.limit:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return
        write_lock, file_lock = self._locks
        with write_lock, file_lock:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def _wal_size(self) -> int:
        try:
            return os.stat(f"{self._path}-wal").st_size
        except FileNotFoundError:
            return 0

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


class _SQLiteTx(SqlTx):
    """The ``Tx`` primitives on one connection inside one transaction.

    Writers hold SQLite's single write lock (``BEGIN IMMEDIATE``) throughout,
    so nothing here needs to lock rows.
    """

    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection) -> None:
        super().__init__(store)
        self._conn = conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    # counters
    def read(self, applied: Sequence[Applied]) -> list[Counter]:
        if not applied:
            return []
        # One statement for every counter of the call: (budget, member) pairs
        # with their bucket ranges (a range is one bucket but for rolling windows).
        ranges = ", ".join("(?, ?, ?, ?)" for _ in applied)
        params = [v for a in applied for v in (a.budget.key, a.member, *counted_range(a.span))]
        rows = self._rows(
            f"WITH wanted (b, m, lo, hi) AS (VALUES {ranges}) "
            "SELECT b, m, COALESCE(SUM(used), 0), COALESCE(SUM(reserved), 0) FROM wanted "
            "LEFT JOIN counters ON budget_key = b AND member = m AND bucket BETWEEN lo AND hi "
            "GROUP BY b, m, lo, hi",
            params,
        )
        found = {(b, m): Counter(used, reserved) for b, m, used, reserved in rows}
        return [found[(a.budget.key, a.member)] for a in applied]

    def read_keys(self, keys: Sequence[Key]) -> list[Counter]:
        if not keys:
            return []
        # Single buckets, one statement; a write transaction holds the database's lock.
        wanted = ", ".join("(?, ?, ?)" for _ in keys)
        rows = self._rows(
            f"WITH wanted (b, m, k) AS (VALUES {wanted}) "
            "SELECT budget_key, member, bucket, used, reserved FROM counters "
            "JOIN wanted ON budget_key = b AND member = m AND bucket = k",
            [v for key in keys for v in key],
        )
        found = {(b, m, k): Counter(used, reserved) for b, m, k, used, reserved in rows}
        return [found.get(key, _ZERO) for key in keys]

    def held_grants(self, pool: str, member: str) -> tuple[list[Grant], list[Counter], Counter]:
        # One statement (a pool's every call reads them: a second one cost 5 % of a pair,
        # bench.credits); the write transaction holds the database's lock, so it is as
        # consistent as two. The join builds each grant's counter key as grant_key does
        # (tests/store/test_credits.py checks they agree).
        rows = self._rows(_HELD_GRANTS, (pool, member, debt_key(pool), member))
        grants, held, debt = [], [], _ZERO
        for row in rows:
            if row[0] is None:
                debt = Counter(row[-2], row[-1])
            else:
                grants.append(grant_from_row(row[:-2]))
                held.append(Counter(row[-2] or 0, row[-1] or 0))
        return grants, held, debt

    def add(self, deltas: Sequence[Delta]) -> None:
        self._run_many(
            "INSERT INTO counters (budget_key, member, bucket, used, reserved) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (budget_key, member, bucket) DO UPDATE SET "
            "used = used + excluded.used, reserved = reserved + excluded.reserved",
            deltas,
        )

    def clear_counters(self, keys: Sequence[str] | None) -> None:
        if keys is None:
            self._run("DELETE FROM counters")
        else:
            self._run_many("DELETE FROM counters WHERE budget_key = ?", [(b,) for b in keys])

    # ledger
    def append(self, event: Event) -> Event:
        cursor = self._conn.execute(EVENT_INSERT, event_values(event))
        return event.with_id(cursor.lastrowid or 0)
