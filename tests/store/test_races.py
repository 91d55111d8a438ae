"""Invariant 1 under real concurrency: no overspend by race.

One budget worth exactly N calls; many threads in several processes race for
it. Exactly N are allowed and the ledger's spend equals the cap. With
estimates above actual usage, more calls fit, never past the cap.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from allotment.governor import Governor
from allotment.store import MemoryStore
from allotment.store.base import EventQuery
from tests.store.race_worker import hammer

pytestmark = pytest.mark.slow

N = 120
UNIT = 100
PROCESSES = 4
THREADS = 16


def budget(gov: Governor) -> None:
    gov.create_budget(
        {"id": "cap", "tenant": "race", "meter": "tokens", "window": "day", "limit": N * UNIT}
    )


def spend(gov: Governor) -> int:
    events, after = [], 0
    while page := gov.events(EventQuery(tenant="race", after_id=after, limit=1000)):
        events += page
        after = page[-1].id or 0
    return sum(e.usage.tokens for e in events if e.status.value == "success")


def race_processes(url: str, estimate: int, actual: int, attempts: int) -> tuple[int, int]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        futures = [
            pool.submit(hammer, url, THREADS, attempts, estimate, actual) for _ in range(PROCESSES)
        ]
        results = [f.result() for f in futures]
    return sum(r[0] for r in results), sum(r[1] for r in results)


def test_processes_and_threads_exactly_n(shared_url: str) -> None:
    with Governor(shared_url) as gov:
        budget(gov)
    allowed, violations = race_processes(shared_url, UNIT, UNIT, attempts=3)
    assert PROCESSES * THREADS * 3 > N  # the budget really is contended
    assert (allowed, violations) == (N, 0)
    with Governor(shared_url) as gov:
        assert spend(gov) == N * UNIT
        assert gov.status({"tenant": "race"})[0].used == N * UNIT
        live = gov.store.counters()
        gov.rebuild()
        assert gov.store.counters() == live


def test_estimates_above_actual_let_more_in_never_past_cap(shared_url: str) -> None:
    with Governor(shared_url) as gov:
        budget(gov)
    allowed, violations = race_processes(shared_url, estimate=2 * UNIT, actual=UNIT, attempts=4)
    assert violations == 0
    with Governor(shared_url) as gov:
        assert spend(gov) == allowed * UNIT <= N * UNIT
    assert allowed > N // 2  # what would fit had every call used its whole estimate


def test_memory_threads_exactly_n() -> None:
    store = MemoryStore()
    budget(Governor(store))
    allowed, violations = hammer(store, THREADS, attempts=12, estimate=UNIT, actual=UNIT)
    assert (allowed, violations) == (N, 0)
    assert spend(Governor(store)) == N * UNIT
