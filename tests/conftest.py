"""Fixtures shared by every test: a settable clock and one store per backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from allotment.governor import Governor

#: Every backend the contract suite runs over (PostgreSQL joins with its issue).
BACKENDS = ["memory", "sqlite"]


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


@pytest.fixture
def gov(make_governor: Callable[..., Governor]) -> Governor:
    return make_governor()
