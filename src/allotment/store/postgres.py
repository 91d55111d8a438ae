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

When the server cannot be reached, no call waits long for it: a call waits
at most ``pool_timeout`` for a connection, and once a probe has found the
server down every call fails at once with ``StoreError`` (a ``fail_open``
budget then allows, degraded) while a thread of the store's own tries to
connect every ``_PROBE_EVERY`` seconds. When it gets through, the pool drops
the connections the outage broke and calls go through again. Errors about
the data (a NUL byte in text, a number out of range) are ``InvalidData``,
never ``StoreError``: they are not outages and must not fail open.

URL: ``postgresql://user@host:port/db`` plus, optionally, ``schema=NAME`` (all
tables live there; created if missing), ``pool=N`` (connections per process,
default 10) and ``pool_timeout=SECONDS`` (the longest a call waits for a
connection, default 1). Other query parameters go to libpq unchanged;
``connect_timeout`` defaults to 2 seconds, libpq's shortest.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from allotment.config import redact_url
from allotment.core import engine
from allotment.core.engine import (
    Applied,
    Buckets,
    Counter,
    bucket_total,
    counted_range,
    occupied,
)
from allotment.core.keys import ApiKey
from allotment.core.ledger import Event, Reservation
from allotment.core.usage import USAGE_FIELDS
from allotment.errors import AllotmentError, ConfigurationError, InvalidData, StoreError
from allotment.lifecycle._shared import merge_deltas
from allotment.lifecycle.tx import ROLLUP_TOTALS, Delta, Key, RollupKey, Tx
from allotment.store._batch import BatchTx, Item
from allotment.store._rows import (
    EVENT_COLUMNS,
    ROLLUP_COLUMNS,
    event_values,
    reservation_from_row,
    reservation_values,
)
from allotment.store._sql import (
    CONFIG_VERSION,
    EVENT_INSERT,
    EVENT_SELECT,
    ROLLUP_ADD,
    ROLLUP_KEY,
    SqlConfig,
    SqlTx,
    reservation_update,
)
from allotment.store._transactional import GroupCommitStore
from allotment.store.migrations.postgres import MIGRATIONS

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.adapt import Dumper
    from psycopg.conninfo import conninfo_to_dict
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
#: Errors about the values sent (a row too large for an index is class 54, "operational").
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, pg_errors.ProgramLimitExceeded)
#: Errors in allotment's own SQL: raised as they are, neither bad input nor an outage.
_BUGS = (psycopg.ProgrammingError, psycopg.NotSupportedError)
#: The server refuses work while it shuts down or starts up: as good as unreachable.
_SERVER_GOING = frozenset({"57P01", "57P02", "57P03"})
#: While the server is unreachable, how often to try a connection.
_PROBE_EVERY = 0.2
#: Serializes schema migrations of concurrently starting instances.
_MIGRATION_LOCK = 0x616C6C6F746D6E74  # "allotmnt"
#: Lock (creating if missing) and read counter rows, in one sorted statement.
_LOCK_COUNTERS = (
    "INSERT INTO counters AS c (budget_key, member, bucket) "
    "SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[]) AS t(b, m, k) ORDER BY b, m, k "
    "ON CONFLICT (budget_key, member, bucket) DO UPDATE SET used = c.used "
    "RETURNING budget_key, member, bucket, used, reserved"
)
#: The counter buckets in ranges that hold anything, one range per (budget key, member,
#: first, last, bucket left out), bucket by bucket: a window's sum, and what a refusal's
#: Retry-After needs, in the same rows.
_WINDOW_BUCKETS = (
    "SELECT r.b, r.m, c.bucket, c.used, c.reserved "
    "FROM unnest(?::text[], ?::text[], ?::bigint[], ?::bigint[], ?::bigint[]) "
    "AS r(b, m, lo, hi, skip) JOIN counters c ON c.budget_key = r.b AND c.member = r.m "
    "AND c.bucket BETWEEN r.lo AND r.hi AND c.bucket <> r.skip "
    "AND (c.used <> 0 OR c.reserved <> 0)"
)
#: a bucket in no window (``_WINDOW_BUCKETS`` leaves none out)
_NO_BUCKET = -2


#: Read counter rows, unlocked (``_LOCK_COUNTERS`` locks them in a write transaction).
_READ_COUNTERS = (
    "SELECT budget_key, member, bucket, used, reserved FROM counters "
    "WHERE (budget_key, member, bucket) IN "
    "(SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[]))"
)
_LOCK_RESERVATIONS = (
    "SELECT * FROM reservations WHERE request_id = ANY(?) ORDER BY request_id, tenant FOR UPDATE"
)
_NEXT_EVENT_IDS = (
    "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, ?)"
)
_ADD_COUNTERS = (
    "INSERT INTO counters AS c (budget_key, member, bucket, used, reserved) "
    "SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[], ?::bigint[], ?::bigint[]) "
    "AS t(b, m, k, u, r) ORDER BY b, m, k "
    "ON CONFLICT (budget_key, member, bucket) DO UPDATE SET "
    "used = c.used + excluded.used, reserved = c.reserved + excluded.reserved"
)


class _Texts(list[str | None]):
    """A ``text[]`` parameter, dumped by ``_TextsDumper``."""


class _Ints(list[int | None]):
    """A ``bigint[]`` parameter, dumped by ``_IntsDumper``."""


class _TextsDumper(Dumper):
    """Writes a ``text[]`` literal directly.

    psycopg's generic list dumper inspects every element to choose a type
    on each call: measured at 211 µs per statement with three arrays against
    135 µs with these dumpers, round trip included. Every element is quoted;
    inside quotes only ``"`` and ``\\`` need a backslash. None is NULL.
    """

    oid = 1009  # text[]

    def dump(self, obj: list[str | None]) -> bytes:
        quoted = (
            "NULL" if s is None else '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for s in obj
        )
        return ("{" + ",".join(quoted) + "}").encode()


class _IntsDumper(Dumper):
    """Writes a ``bigint[]`` literal directly (see ``_TextsDumper``). None is NULL."""

    oid = 1016  # int8[]

    def dump(self, obj: list[int | None]) -> bytes:
        return ("{" + ",".join("NULL" if n is None else str(n) for n in obj) + "}").encode()


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_dumper(_Texts, _TextsDumper)
    conn.adapters.register_dumper(_Ints, _IntsDumper)


def _arrays(rows: Sequence[Sequence[Any]], kinds: str) -> list[_Texts | _Ints]:
    """``rows`` as one array per column; ``kinds`` says each column's type (t or i)."""
    columns = zip(*rows, strict=True) if rows else ((),) * len(kinds)
    return [_Texts(c) if k == "t" else _Ints(c) for k, c in zip(kinds, columns, strict=True)]


def _unnest(kinds: str) -> str:
    """``unnest`` of one array parameter per column of ``kinds``."""
    return "unnest(" + ", ".join("?::text[]" if k == "t" else "?::bigint[]" for k in kinds) + ")"


# Many rows in one statement each, their columns as arrays (see _TextsDumper):
# a kind per column, t (text) or i (bigint), in the table's column order.
_EVENT_INTS = {"id", *USAGE_FIELDS, "occurred_at", "recorded_at"}
_EVENT_KINDS = "".join("i" if c in _EVENT_INTS else "t" for c in EVENT_COLUMNS)
_INSERT_EVENTS = f"INSERT INTO events ({EVENT_SELECT}) SELECT * FROM {_unnest(_EVENT_KINDS)}"
#: request_id .. commit_hash, event_id, subject .. charges, authorized_at, expires_at
_RESERVATION_KINDS = "tttttitttttiiiii"
_INSERT_RESERVATIONS = f"INSERT INTO reservations SELECT * FROM {_unnest(_RESERVATION_KINDS)}"
_UPDATE_RESERVATIONS = (
    "UPDATE reservations AS r SET state = t.s, commit_hash = t.h, event_id = t.e, "
    "expires_at = t.x "
    f"FROM {_unnest('ttiitt')} AS t(s, h, e, x, id, tn) "
    "WHERE r.request_id = t.id AND r.tenant = t.tn"
)
#: the key (tenant, hour, then seven texts), calls and the totals
_ROLLUP_KINDS = "ti" + "t" * 7 + "i" * (1 + len(ROLLUP_TOTALS))
_BUMP_ROLLUPS = (
    f"INSERT INTO rollups ({', '.join(ROLLUP_COLUMNS)}) SELECT * FROM {_unnest(_ROLLUP_KINDS)} "
    f"AS t({', '.join(ROLLUP_COLUMNS)}) ORDER BY {ROLLUP_KEY} {ROLLUP_ADD}"
)


class PostgresStore(SqlConfig, GroupCommitStore):
    """A store in one PostgreSQL database (``postgresql://…``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conninfo, self.schema, size = _parse_url(url)
        self.pool_timeout = _pool_timeout(url)
        super().__init__()
        #: why calls fail at once, while the server is found unreachable (None: it is not)
        self._outage: str | None = None
        self._prober: threading.Thread | None = None
        self._probed_at = -_PROBE_EVERY
        self._probe_lock = threading.Lock()
        self._closing = threading.Event()
        # UTF8: the array dumpers encode as UTF-8.
        options: dict[str, Any] = {
            "autocommit": True, "prepare_threshold": 2, "client_encoding": "UTF8",
        }  # fmt: skip
        if "connect_timeout" not in conninfo_to_dict(self.conninfo):
            options["connect_timeout"] = 2
        if self.schema is not None:
            options["options"] = f"-c search_path={self.schema}"
        self._connect_options = options
        # A connection that fails to reconnect is given up at once, not retried on a
        # doubling schedule: the store's probe finds when the server is back, and a
        # pool slot waiting out a backoff then would keep calls waiting (5-7 s).
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.conninfo, min_size=1, max_size=size, kwargs=options, open=False,
            timeout=self.pool_timeout, reconnect_timeout=_PROBE_EVERY, configure=_configure,
        )  # fmt: skip
        try:
            # One direct attempt first: a refused or failing connection says why at
            # once, where the pool would retry it until its open timeout (10 s).
            psycopg.connect(self.conninfo, **options).close()
            self._pool.open(wait=True, timeout=10)
        except (PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}") from exc
        self._migrate()

    #: calls wait on the network: the service runs release in the thread pool
    blocking = True

    def _once(self, items: list[Item]) -> list[Any]:
        """``items`` as one transaction, database errors raised as they are.

        The buffered writes and the COMMIT go out as one pipeline: one round
        trip, so the batch holds its locks for as short a time as it can.
        """
        with self._connection() as conn:
            try:
                batch = BatchTx(_PostgresTx(self, conn, locking=True), items)
                results = [item.run(batch) for item in items]
                with conn.pipeline():
                    batch.flush()
                    conn.execute("COMMIT")
                return results
            except BaseException:
                _roll_back(conn)
                raise

    # transactions
    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; database errors raised as allotment's (but conflicts to retry)."""
        if self._outage is not None:
            raise StoreError(f"PostgreSQL is unreachable: {self._outage}")
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            error = self._translate(exc)
            if error is None:
                raise
            raise error from exc

    def _translate(self, exc: psycopg.Error) -> AllotmentError | None:
        """allotment's error for ``exc``, or None to raise it as it is: a conflict
        that running again resolves, or a bug in allotment's SQL."""
        if _retryable(exc) or isinstance(exc, _BUGS):
            return None
        if isinstance(exc, _DATA_ERRORS):
            field = exc.diag.column_name or "request"
            return InvalidData(
                field, f"PostgreSQL refused a value: {exc.diag.message_primary or exc}"
            )
        if _unreachable(exc):
            self._probe_soon()
        return StoreError(f"PostgreSQL: {exc}")

    # outages
    def _probe_soon(self) -> None:
        """Have a thread find out whether the server is reachable, unless one does already.

        A lost connection may be just that connection (a backend terminated):
        calls go on as usual until the probe finds the server itself unreachable.
        """
        with self._probe_lock:
            if self._prober is not None or self._closing.is_set():
                return
            if self._outage is None and time.monotonic() < self._probed_at + _PROBE_EVERY:
                return  # it answered a moment ago: the pool is replacing what broke
            self._prober = threading.Thread(
                target=self._probe, name="allotment-pg-probe", daemon=True
            )
            self._prober.start()

    def _probe(self) -> None:
        """Try a connection every ``_PROBE_EVERY`` seconds until one succeeds.

        While none does, calls fail at once. Once one does, the pool first drops
        the idle connections the outage broke, so the calls let through then do
        not each find one of them dead.
        """
        try:
            while (failure := self._try_connect()) is not None:
                self._outage = failure
                if self._closing.wait(_PROBE_EVERY):
                    return
            with suppress(psycopg.Error):
                self._pool.check()
            self._outage = None
        finally:
            with self._probe_lock:
                self._prober = None
                self._probed_at = time.monotonic()

    def _try_connect(self) -> str | None:
        """None if a new connection to the server succeeds, else why not."""
        try:
            psycopg.connect(self.conninfo, **self._connect_options).close()
        except psycopg.Error as exc:
            return str(exc) or type(exc).__name__
        return None

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
            _roll_back(conn)
            raise

    # schema
    def _migrate(self) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            if self.schema is not None:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            _PostgresTx(self, conn, locking=True).migrate(MIGRATIONS)

    def schema_version(self) -> int:
        """The highest applied migration."""
        return self._read(lambda tx: cast(SqlTx, tx).schema_version())

    def close(self) -> None:
        super().close()
        self._closing.set()
        prober = self._prober
        if prober is not None:
            prober.join()
        self._pool.close()


def _roll_back(conn: psycopg.Connection[Any]) -> None:
    """Roll back a failed transaction if the connection still can, without raising.

    The error that failed the transaction is the one to report; a connection
    that cannot roll back is broken, and the pool discards it.
    """
    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with suppress(psycopg.Error):
            conn.execute("ROLLBACK")


def _unreachable(exc: psycopg.Error) -> bool:
    """Whether ``exc`` says the server is gone rather than answering with an error.

    Errors psycopg raises itself (no SQLSTATE: a lost or refused connection,
    no connection free in time) and the server's own "shutting down",
    "starting up" and connection errors.
    """
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SERVER_GOING


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
        elif name != "pool_timeout":  # read by _pool_timeout
            rest.append((name, value))
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), ""))
    return conninfo, schema, size


def _pool_timeout(url: str) -> float:
    """The URL's ``pool_timeout``: seconds a call may wait for a connection (default 1)."""
    values = [v for name, v in parse_qsl(urlsplit(url).query) if name == "pool_timeout"]
    if not values:
        return 1.0
    try:
        seconds = float(values[-1])
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 600:
        raise ConfigurationError(f"pool_timeout must be seconds in (0, 600], got {values[-1]!r}")
    return seconds


def _retryable(exc: psycopg.Error) -> bool:
    """A conflict with a concurrent transaction that running again resolves.

    A request id claimed meanwhile by another transaction is one: the retry
    finds its reservation and replays or refuses it as a conflict.
    """
    if isinstance(exc, pg_errors.UniqueViolation):
        return exc.diag.constraint_name == "reservations_pkey"
    return isinstance(exc, _RETRY)


@lru_cache(maxsize=256)
def _pg(sql: str) -> str:
    """Shared SQL (``?`` placeholders) in psycopg's ``%s`` style."""
    return sql.replace("?", "%s")


class _PostgresTx(SqlTx):
    """The ``Tx`` primitives on one connection inside one transaction.

    A write transaction (``locking``) locks what it reads to change: counters
    (see ``read``), reservations and a top-up by id (``FOR UPDATE``), expired
    reservations and due top-ups (``SKIP LOCKED``) and the key table when it
    lists keys. A member's one pending top-up is a partial unique index, which
    a concurrent insert waits on (``start_topup``).
    """

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any], locking: bool) -> None:
        super().__init__(store)
        self._conn = conn
        self._locking = locking
        self._lock_rows = " FOR UPDATE" if locking else ""
        #: rolling windows as the last read found them, bucket by bucket (until a write)
        self._windows: dict[tuple[str, str], Buckets] = {}

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(_pg(sql), params).fetchall()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(_pg(sql), params).rowcount

    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self._conn.cursor() as cursor:
                cursor.executemany(_pg(sql), rows)

    def keys(self, tenant: str | None) -> list[ApiKey]:
        if self._locking:
            # A writer that lists keys decides on what it saw (the first key of a
            # new database): no other writer may add one until it commits.
            self._run("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE")
        return super().keys(tenant)

    # counters
    def read(self, applied: Sequence[Applied]) -> list[Counter]:
        if not applied:
            return []
        # A rolling window's other buckets: summed, not locked (a write only adds to the
        # current bucket, under the window's anchor, which is locked). A plain read sums
        # every bucket counted, the current one's too. Rows: key, member, first, last, and
        # the bucket left out (none: -2, in no window).
        locking = self._locking
        rolling = [
            (
                a.budget.key,
                a.member,
                *counted_range(a.span),
                a.span.bucket if locking else _NO_BUCKET,
            )
            for a in applied
            if not locking or a.span.first_bucket < a.span.bucket
        ]
        current: dict[Key, tuple[int, int]] = {}
        if self._locking:
            keys = sorted(engine.locked_by(applied))
            if rolling:
                # One round trip: the buckets are read after the locks are granted, by a
                # statement of their own, so they see every writer that held them before.
                with self._conn.pipeline():
                    locked = self._conn.execute(_pg(_LOCK_COUNTERS), _arrays(keys, "tti"))
                    found = self._conn.execute(_pg(_WINDOW_BUCKETS), _arrays(rolling, "ttiii"))
                    rows, others = locked.fetchall(), found.fetchall()
                current = {(b, m, k): (used, reserved) for b, m, k, used, reserved in rows}
            else:
                current = self.lock_counters(keys)
        else:
            others = self._rows(_WINDOW_BUCKETS, _arrays(rolling, "ttiii"))
        windows: dict[tuple[str, str], Buckets] = {}
        if rolling:
            for b, m, k, used, reserved in others:
                windows.setdefault((b, m), {})[k] = (used, reserved)
        out = []
        for hit in applied:
            at = (hit.budget.key, hit.member)
            counter = Counter(*current.get((*at, hit.span.bucket), (0, 0)))
            window = windows.get(at)
            if window is not None or hit.span.first_bucket < hit.span.bucket:
                window = window or {}
                if counter.used or counter.reserved:
                    window[hit.span.bucket] = counter
                self._windows[at] = window
                counter = bucket_total(window)
            out.append(counter)
        return out

    def buckets(self, hit: Applied) -> list[tuple[int, int]]:
        # Read with the window's sum (so a refusal's Retry-After costs no round trip),
        # unless a write came since.
        window = self._windows.get((hit.budget.key, hit.member))
        if window is None:
            return super().buckets(hit)
        return occupied(window)

    def window_buckets(
        self, budget_key: str, member: str, first: int, last: int, skip: Sequence[int]
    ) -> Buckets:
        rows = self._rows(
            "SELECT bucket, used, reserved FROM counters WHERE budget_key = ? AND member = ? "
            "AND bucket BETWEEN ? AND ? AND bucket <> ALL(?) AND (used <> 0 OR reserved <> 0)",
            (budget_key, member, first, last, _Ints(skip)),
        )
        return {k: (used, reserved) for k, used, reserved in rows}

    def read_keys(self, keys: Sequence[Key]) -> list[Counter]:
        if not keys:
            return []
        if self._locking:
            current = self.lock_counters(sorted(set(keys)))
        else:
            rows = self._rows(_READ_COUNTERS, _arrays(keys, "tti"))
            current = {(b, m, k): (used, reserved) for b, m, k, used, reserved in rows}
        return [Counter(*current.get(key, (0, 0))) for key in keys]

    def add(self, deltas: Sequence[Delta]) -> None:
        # One row per counter: an upsert may not change the same row twice.
        rows = [d for d in merge_deltas(deltas) if d[3] or d[4]]
        if rows:
            self._windows.clear()
            self._run(_ADD_COUNTERS, _arrays(rows, "ttiii"))

    def clear_counters(self, keys: Sequence[str] | None) -> None:
        # Wait for every transaction that has charged a counter, and hold new
        # ones off: the recount that follows then sees a settled ledger.
        self._run("LOCK TABLE counters IN SHARE ROW EXCLUSIVE MODE")
        if keys is None:
            self._run("DELETE FROM counters")
        else:
            self._run("DELETE FROM counters WHERE budget_key = ANY(?)", (_Texts(keys),))

    # batches (see allotment.store._batch)
    def lock_counters(
        self, keys: Sequence[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], tuple[int, int]]:
        if not keys:
            return {}
        rows = self._rows(_LOCK_COUNTERS, _arrays(keys, "tti"))
        return {(b, m, k): (used, reserved) for b, m, k, used, reserved in rows}

    def open_batch(
        self, request_ids: Sequence[str], events: int
    ) -> tuple[dict[str, list[Reservation]], list[int]]:
        """Begin, read the config version, lock ``request_ids``' reservations (every
        tenant's) and take ``events`` event ids: one pipeline, one round trip."""
        with self._conn.pipeline():
            self._conn.execute("BEGIN")
            version = self._conn.execute(CONFIG_VERSION)
            locked = self._conn.execute(_pg(_LOCK_RESERVATIONS), (_Texts(request_ids),))
            ids = self._conn.execute(_pg(_NEXT_EVENT_IDS), (events,))
            ((number,),) = version.fetchall()
            rows, taken = locked.fetchall(), ids.fetchall()
        self.configure(number)
        found: dict[str, list[Reservation]] = {}
        for reservation in map(reservation_from_row, rows):
            found.setdefault(reservation.request_id, []).append(reservation)
        return found, [row[0] for row in taken]

    def insert_events(self, events: Sequence[Event]) -> None:
        if events:
            rows = [(e.id, *event_values(e)) for e in events]
            self._run(_INSERT_EVENTS, _arrays(rows, _EVENT_KINDS))

    def upsert_reservations(
        self, inserts: Sequence[Reservation], updates: Sequence[Reservation]
    ) -> None:
        if inserts:
            rows = [reservation_values(r) for r in inserts]
            self._run(_INSERT_RESERVATIONS, _arrays(rows, _RESERVATION_KINDS))
        if updates:
            changes = [reservation_update(r) for r in updates]
            self._run(_UPDATE_RESERVATIONS, _arrays(changes, "ttiitt"))

    def bump_rollups(self, rows: Sequence[tuple[RollupKey, Sequence[int]]]) -> None:
        if rows:
            flat = [(*key, *values) for key, values in rows]
            self._run(_BUMP_ROLLUPS, _arrays(flat, _ROLLUP_KINDS))

    # ledger
    def append(self, event: Event) -> Event:
        ((event_id,),) = self._rows(EVENT_INSERT + " RETURNING id", event_values(event))
        return event.with_id(event_id)
