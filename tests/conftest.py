"""Fixtures shared by every test: a settable clock and one store per backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from allotment.governor import Governor

#: Every backend the contract suite runs over.
BACKENDS = ["memory", "sqlite", "postgres"]
#: The PostgreSQL server the tests use; each test gets a schema of its own there.
PG_SERVER = os.environ.get("ALLOTMENT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


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


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL, dropped afterwards."""
    url = fresh_postgres_url()
    yield url
    drop_postgres(url)


@pytest.fixture(params=["sqlite", "postgres"])
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
    """A fresh store URL of ``backend`` under ``tmp_path``."""
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
def make_governor(backend: str, tmp_path: Path, clock: Clock) -> Iterator[Callable[..., Governor]]:
    """Build governors on one fresh store of the parametrized backend."""
    made: list[Governor] = []
    url = store_url(backend, tmp_path)

    def make(**kwargs: object) -> Governor:
        kwargs.setdefault("clock", clock)
        governor = Governor(url if backend != "memory" or not made else made[0].store, **kwargs)  # type: ignore[arg-type]
        made.append(governor)
        return governor

    yield make
    for governor in made:
        governor.close()
    if backend == "postgres":
        drop_postgres(url)


@pytest.fixture
def gov(make_governor: Callable[..., Governor]) -> Governor:
    return make_governor()
