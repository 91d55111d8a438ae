"""Fixtures shared by every test: a settable clock and one store per backend.

Backends come from one table, each with its marker (``-m "not postgres"`` runs
the suite without a PostgreSQL server). PostgreSQL tests share one migrated
schema per test process (per xdist worker), emptied before each test: a new
schema and every migration for each test took longer than most of those tests
themselves. Tests that need a schema nobody used (migrations, faults, several
processes) take ``postgres_url`` or ``fresh_postgres_url()`` instead.
"""

from __future__ import annotations

import os
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


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the backends it uses, so ``-m`` can select them."""
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
        callspec = getattr(item, "callspec", None)
        for value in callspec.params.values() if callspec is not None else ():
            if isinstance(value, str) and value in BACKEND_MARKS:
                item.add_marker(BACKEND_MARKS[value])


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


def store_url(backend: str, tmp_path: Path) -> str:
    """A fresh store URL of ``backend`` under ``tmp_path`` (a new PostgreSQL schema)."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'allotment.db'}"
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
