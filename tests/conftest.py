"""Fixtures shared by every test: a settable clock and one store per backend.

Backends come from one table, each with its marker (``-m "not postgres"`` runs
the suite without a PostgreSQL server). PostgreSQL tests share one migrated
schema per test process (per xdist worker), emptied before each test: a new
schema and every migration for each test took longer than most of those tests
themselves. Tests that need a schema nobody used (migrations, faults, several
processes) take ``postgres_url`` or ``fresh_postgres_url()`` instead. A SQLite
store of ``make_governor`` is a copy of one migrated file, for the same reason.

The hooks at the end keep what the suite costs itself down: how xdist hands out
tests, the cycle collector, the CLI tests' command tree and httpx's SSL context
(see each).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from allotment.governor import Governor

if TYPE_CHECKING:
    import psycopg

#: The marker of each backend: a test that runs on one carries its marker.
BACKEND_MARKS = {
    "memory": pytest.mark.memory,
    "sqlite": pytest.mark.sqlite,
    "postgres": pytest.mark.postgres,
}


def backends(*names: str) -> list[pytest.ParameterSet]:
    """The backends ``names`` as parameters, each with its marker (all of them by default)."""
    return [pytest.param(name, marks=BACKEND_MARKS[name]) for name in names or BACKEND_MARKS]


#: Every backend the contract suite runs over.
BACKENDS = backends()
#: The backends several processes or stores can open at once.
SHARED_BACKENDS = backends("sqlite", "postgres")
#: Fixtures that need PostgreSQL (the test server, or server binaries): their tests are
#: marked ``postgres``, as is a test parametrized by a backend's name (see the hook below).
POSTGRES_FIXTURES = frozenset({"postgres_url", "clean_postgres_url", "private_postgres"})
#: The PostgreSQL server the tests use: each test process, and each test that needs a
#: fresh one, gets a schema of its own there.
PG_SERVER = os.environ.get("ALLOTMENT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.hookimpl(wrapper=True, tryfirst=True)  # around ``-m``, which deselects by marker
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """Mark each test with the backends it uses, so ``-m`` can select them; then,
    under xdist, spread the slow tests over the workers (``_spread_slow_tests``)."""
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
        callspec = getattr(item, "callspec", None)
        for value in callspec.params.values() if callspec is not None else ():
            if isinstance(value, str) and value in BACKEND_MARKS:
                item.add_marker(BACKEND_MARKS[value])
    yield
    workers = getattr(config, "workerinput", {}).get("workercount", 0)
    if workers > 1:
        items[:] = _spread_slow_tests(items, workers)


@cache
def postgres_missing() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'allotment[postgres]')"
    try:
        psycopg.connect(PG_SERVER, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_SERVER} is not reachable: {exc}"
    return None


def need_postgres() -> None:
    """Skip without PostgreSQL, except in CI, where a missing server fails the test."""
    reason = postgres_missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI needs PostgreSQL: {reason}")
    pytest.skip(reason)


def fresh_postgres_url(**options: str) -> str:
    """A URL of a new, empty schema on the test server (drop it with ``drop_postgres``)."""
    need_postgres()
    query = "&".join(
        f"{k}={v}" for k, v in {"schema": f"t_{uuid.uuid4().hex[:16]}", **options}.items()
    )
    return f"{PG_SERVER}?{query}"


def drop_postgres(url: str) -> None:
    """Drop the schema a ``fresh_postgres_url`` made, and everything in it."""
    import psycopg

    schema = url.rsplit("schema=", 1)[1].split("&", 1)[0]
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


#: The tables of a schema that a reset empties: all but the migrations' own record.
_TABLES = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname <> 'schema_migrations' "
    "ORDER BY c.relname"
)
#: Every sequence of a schema (identity columns' too) back to its start.
_RESTART_SEQUENCES = (
    "SELECT setval(s.seqrelid, s.seqstart, false) FROM pg_sequence s "
    "JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = {}"
)
#: Whoever still holds a lock in the schema: a transaction an earlier test left open.
_TERMINATE_HOLDERS = (
    "SELECT pg_terminate_backend(l.pid, 5000) FROM pg_locks l "
    "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND l.pid <> pg_backend_pid()"
)


class ReusedSchema:
    """One migrated schema on the test server, emptied before each test that uses it.

    A reset deletes every row, restarts the sequences and puts back the rows
    the migrations wrote (``meta``: ``config_version`` as migrated): the schema
    is then as freshly migrated, shared secrets and API keys gone. It is one
    round trip of plain ``DELETE``s: ``TRUNCATE`` makes new files for every
    table and index and cost several times more. Tables are read from the
    catalog once migrated, so a new migration's tables are emptied too (a
    foreign key between them would need its rows deleted child first).
    """

    def __init__(self) -> None:
        from allotment.store.postgres import PostgresStore

        self.schema = f"s_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:12]}"
        self.url = f"{PG_SERVER}?schema={self.schema}"
        PostgresStore(self.url).close()  # runs the migrations
        self._conn: psycopg.Connection[Any] | None = None
        self._reset_sql = self._statements(self._connection())

    def reset(self) -> None:
        """Empty the schema back to its migrated rows."""
        self._execute(self._reset_sql)

    def close(self) -> None:
        self._execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self._connection().close()

    def _execute(self, statements: str) -> None:
        """Run ``statements``, first ending any transaction an earlier test left open
        in the schema (it would hold them off)."""
        import psycopg

        try:
            self._connection().execute(statements)
        except psycopg.errors.LockNotAvailable:
            self._connection().execute(_TERMINATE_HOLDERS, (self.schema,))
            self._connection().execute(statements)

    def _connection(self) -> psycopg.Connection[Any]:
        """The connection resets run on, opened again if a test broke it."""
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(PG_SERVER, autocommit=True)
            self._conn.execute("SET lock_timeout = '5s'")
            # A reset is seen at once by the next connection either way; only a crash loses it.
            self._conn.execute("SET synchronous_commit = off")
        return self._conn

    def _statements(self, conn: psycopg.Connection[Any]) -> str:
        """The reset: one transaction of statements, sent at once."""
        from psycopg import sql

        statements = [sql.SQL(_RESTART_SEQUENCES).format(sql.Literal(self.schema))]
        for (table,) in conn.execute(_TABLES, (self.schema,)).fetchall():
            name = sql.Identifier(self.schema, table)
            statements.append(sql.SQL("DELETE FROM {}").format(name))
            for row in conn.execute(sql.SQL("SELECT * FROM {}").format(name)).fetchall():
                values = sql.SQL(", ").join(map(sql.Literal, row))
                statements.append(sql.SQL("INSERT INTO {} VALUES ({})").format(name, values))
        return sql.SQL("; ").join(statements).as_string(conn)


@pytest.fixture(scope="session")
def reused_postgres() -> Iterator[ReusedSchema]:
    """This test process's migrated schema (see ``clean_postgres_url``)."""
    need_postgres()
    schema = ReusedSchema()
    yield schema
    schema.close()


@pytest.fixture
def clean_postgres_url(request: pytest.FixtureRequest) -> str:
    """A migrated PostgreSQL schema with no rows but the migrations' own.

    The schema is shared by every test of this process: a test must close
    every store it opens on it (``make_governor`` does), or what it left
    running would write into the next test's data.
    """
    need_postgres()
    schema: ReusedSchema = request.getfixturevalue("reused_postgres")
    schema.reset()
    return schema.url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL, dropped afterwards."""
    url = fresh_postgres_url()
    yield url
    drop_postgres(url)


@pytest.fixture(params=SHARED_BACKENDS)
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database that several processes or stores can open at once: a SQLite
    file, then a PostgreSQL schema (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    url = fresh_postgres_url()
    yield url
    drop_postgres(url)


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))


@cache
def _migrated_sqlite() -> Path:
    """A SQLite file with every migration applied, made once per test process
    (removed at the session's end)."""
    from allotment.store.sqlite import SQLiteStore

    path = Path(tempfile.mkdtemp(prefix="allotment-migrated-")) / "migrated.db"
    SQLiteStore(f"sqlite:///{path}").close()
    return path


def store_url(backend: str, tmp_path: Path) -> str:
    """A fresh store URL of ``backend`` under ``tmp_path`` (a new PostgreSQL schema).

    A SQLite store starts as a copy of one migrated file: the same bytes as a new
    file and every migration, in a ninth of the time (1 ms, not 9 ms). Tests of
    migrations themselves open files of their own.
    """
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        path = tmp_path / "allotment.db"
        shutil.copyfile(_migrated_sqlite(), path)
        return f"sqlite:///{path}"
    if backend == "postgres":
        return fresh_postgres_url()
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_governor(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> Iterator[Callable[..., Governor]]:
    """Build governors on one empty store of the parametrized backend (PostgreSQL: the
    reused schema, so every governor is closed afterwards)."""
    made: list[Governor] = []
    if backend == "postgres":
        url = str(request.getfixturevalue("clean_postgres_url"))
    else:
        url = store_url(backend, tmp_path)

    def make(**kwargs: object) -> Governor:
        kwargs.setdefault("clock", clock)
        governor = Governor(url if backend != "memory" or not made else made[0].store, **kwargs)  # type: ignore[arg-type]
        made.append(governor)
        return governor

    yield make
    for governor in made:
        governor.close()


@pytest.fixture
def gov(make_governor: Callable[..., Governor]) -> Governor:
    return make_governor()


# --- what the suite costs itself ---------------------------------------------------------


@pytest.hookimpl(tryfirst=True)  # before xdist reads --dist
def pytest_cmdline_main(config: pytest.Config) -> None:
    """With ``-n``, hand tests out by work stealing unless ``--dist`` says otherwise.

    xdist's default (``load``) gives each worker large runs of consecutive tests:
    one worker was left with the e2e and reliability tests while the other
    finished 45 s earlier. ``worksteal`` gives each half and lets an idle worker
    take half of what the other has left.
    """
    if config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None):
        if config.getoption("dist") == "no":  # not given
            config.option.dist = "worksteal"


def _spread_slow_tests(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """``items`` reordered so that each worker's first share starts with its part of
    the slow tests, dealt in turn.

    xdist's ``worksteal`` gives each of ``workers`` workers an equal run of the
    collection, and an idle worker takes the second half of what another has
    not started. In collection order the slow tests (e2e, reliability: 70 s of
    CPU and waiting) fell into one worker's share, and one of them running last
    could not be split: the other worker waited for it. Started first, on every
    worker, they are done while there are short tests left to share. Every
    process collects the same order, as xdist requires.
    """
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if not slow:
        return items
    chosen = set(map(id, slow))
    rest = [item for item in items if id(item) not in chosen]
    shares: list[list[pytest.Item]] = [slow[n::workers] for n in range(workers)]
    size, taken = len(items) // workers, 0
    for share in shares[:-1]:
        more = max(0, size - len(share))
        share += rest[taken : taken + more]
        taken += more
    shares[-1] += rest[taken:]
    return [item for share in shares for item in share]


def pytest_configure(config: pytest.Config) -> None:
    """No cycle collection while the process imports and collects (see below);
    CliRunner builds the CLI's command tree once per process, httpx's clients share
    one default SSL context."""
    gc.disable()
    _build_commands_once()
    _share_default_ssl_context()


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Collect once, then leave what was imported and collected out of every later pass.

    A test process holds about 500,000 objects from imports and collection
    (FastAPI's and pydantic's models, the price catalog, the test items) that live
    as long as it does. Every full collection walked all of them again: 150 ms
    each, 7 s per run; frozen, they are never walked. The first generation's
    threshold (700 allocations by default) is raised for the many short-lived
    objects each test makes; what the tests leave behind is still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    gc.enable()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _migrated_sqlite.cache_info().currsize:
        shutil.rmtree(_migrated_sqlite().parent, ignore_errors=True)


def _build_commands_once() -> None:
    """Make ``CliRunner.invoke`` build an app's click command once, not on every call.

    Typer turns the app into click commands on each invocation, reading the
    signature and type hints of every command: 30 ms of each CLI test's call,
    5 s of the CLI tests. The command holds no state of an invocation (click
    makes a new context for each), as when the real ``allotment`` builds it once
    per process.
    """
    import typer.testing

    build = getattr(typer.testing, "_get_command", None)
    if build is None or getattr(build, "built", None) is not None:
        return  # another typer (tests/test_the_suite.py says so), or already done
    built: dict[int, tuple[Any, Any]] = {}

    def get_command(app: Any) -> Any:
        entry = built.get(id(app))
        if entry is None or entry[0] is not app:
            entry = built[id(app)] = (app, build(app))
        return entry[1]

    get_command.built = built  # type: ignore[attr-defined]
    typer.testing._get_command = get_command


def _share_default_ssl_context() -> None:
    """Give the httpx clients of this process one SSL context per trust setting.

    httpx makes a new context for each client, even one that only speaks plain
    HTTP: loading the CA certificates took 20 to 30 ms each time, 15 s of a run
    (a readiness poll every 0.2 s, 64 concurrent clients under load, the Python
    client). Every client of the tests speaks plain HTTP to loopback, where the
    context is never used (httpcore sets a shared context's ALPN protocols per TLS
    connection: a test of HTTP/2 over TLS would want a context of its own). Only
    ``verify=True`` without a ``cert`` is shared, per CA bundle it was made from
    (certifi's, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``); anything else is made as before.
    """
    try:
        from httpx._transports import default
    except ImportError:
        return  # another httpx: tests/test_the_suite.py says so
    make = getattr(default, "create_ssl_context", None)
    if make is None or getattr(make, "shared", None) is not None:
        return  # another httpx, or already done
    shared: dict[tuple[object, ...], Any] = {}

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is not True or cert is not None:
            return make(verify=verify, cert=cert, trust_env=trust_env)
        env = os.environ
        key = (
            trust_env,
            trust_env and env.get("SSL_CERT_FILE"),
            trust_env and env.get("SSL_CERT_DIR"),
        )
        if key not in shared:
            shared[key] = make(verify=True, cert=None, trust_env=trust_env)
        return shared[key]

    create_ssl_context.shared = shared  # type: ignore[attr-defined]
    default.create_ssl_context = create_ssl_context  # type: ignore[assignment]
