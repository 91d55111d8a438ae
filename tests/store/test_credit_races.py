"""No overspend by race on a credit pool (issue 18): a period budget and three grants.

64 threads in each of 4 processes race for a pool worth exactly N calls: its
allowance and three grants. Exactly N are allowed, the ledger's spend equals
what the pool held, no grant is overdrawn, and a rebuild gives the same
balances.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.store.race_worker import hammer

pytestmark = pytest.mark.slow

UNIT = 100
ALLOWANCE = 30  # calls
GRANTS = (40, 30, 20)  # calls each
N = ALLOWANCE + sum(GRANTS)
PROCESSES = 4
THREADS = 64


def test_a_pool_of_allowance_and_three_grants_admits_exactly_n(shared_url: str) -> None:
    with Governor(shared_url) as gov:
        gov.create_budget({"id": "plan", "tenant": "race", "meter": "tokens", "window": "month",
                           "limit": ALLOWANCE * UNIT, "credits": True})  # fmt: skip
        for i, calls in enumerate(GRANTS):
            gov.add_grant("plan", calls * UNIT, grant_id=f"g{i}", priority=i)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        futures = [pool.submit(hammer, shared_url, THREADS, 1, UNIT, UNIT)
                   for _ in range(PROCESSES)]  # fmt: skip
        results = [f.result() for f in futures]
    allowed = sum(r[0] for r in results)
    violations = sum(r[1] for r in results)
    assert PROCESSES * THREADS > N  # the pool really is contended
    assert (allowed, violations) == (N, 0)
    with Governor(shared_url) as gov:
        events = gov.events(EventQuery(tenant="race", limit=10_000))
        assert sum(e.usage.tokens for e in events if e.status.value == "success") == N * UNIT
        [view] = gov.status({"tenant": "race"})
        assert (view.used, view.reserved) == (ALLOWANCE * UNIT, 0)
        status = gov.pool("plan")
        assert (status.available, status.debt) == (0, 0)
        assert [(g.used, g.reserved) for g in status.grants] == [(c * UNIT, 0) for c in GRANTS]
        live = gov.store.counters()
        gov.rebuild()
        assert gov.store.counters() == live
