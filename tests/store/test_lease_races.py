"""Leases and rate limits under real concurrency (issue 19): no slot over the cap, no
request over the window's limit, no slot lost to a client that died.

32 clients (4 processes of 8 threads, on the real clock) race for the 10 slots
of a concurrency budget: no granted decision sees more than 10 slots taken,
no more than 10 clients ever hold one at once, and at the end none is held
and the ledger accounts for every call. Many more calls than a rolling
window's limit, raced across processes within seconds: exactly the limit
gets through. A process that dies holding every slot gives them back once
their TTL is over.

The last test shows, without a race, what the rolling-window race meets when
it straddles a second boundary (counted since: ``engine.counted_range``).
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from allotment.core.decisions import Reason
from allotment.core.ledger import Event
from allotment.governor import Governor
from allotment.store import MemoryStore
from allotment.store.base import EventQuery
from tests.conftest import Clock
from tests.store.lease_race_worker import (
    RUN,
    SUBJECT,
    Tally,
    die_holding,
    lease_clients,
    most_held,
    rate_clients,
)

pytestmark = pytest.mark.slow

SLOTS = 10
PROCESSES = 4
THREADS = 8
ROUNDS = 6
RATE = 50  # requests per rolling minute
SPAWN = multiprocessing.get_context("spawn")


def budgets(gov: Governor) -> None:
    """Ten slots, and a token budget each lease also reserves on ("start an agent run")."""
    gov.create_budget({"id": "slots", "tenant": "race", "meter": "concurrency",
                       "window": "lifetime", "limit": SLOTS})  # fmt: skip
    gov.create_budget({"id": "tokens", "tenant": "race", "meter": "tokens", "window": "day",
                       "limit": 10**9})  # fmt: skip


def events(gov: Governor) -> list[Event]:
    found: list[Event] = []
    while page := gov.events(
        EventQuery(tenant="race", after_id=found[-1].id or 0 if found else 0, limit=1000)
    ):
        found += page
    return found


def in_processes(worker: Callable[..., Tally], *args: object) -> Tally:
    """Run ``worker(*args, seed, start)`` in each of PROCESSES spawned processes, started
    together; their tallies."""
    total = Tally()
    with SPAWN.Manager() as manager, ProcessPoolExecutor(PROCESSES, mp_context=SPAWN) as pool:
        start = manager.Barrier(PROCESSES)  # every process starts once all are ready
        futures = [pool.submit(worker, *args, seed, start) for seed in range(PROCESSES)]
        for future in futures:
            total.add(future.result())
    return total


def assert_every_lease_accounted_for(gov: Governor, tally: Tally) -> None:
    """No slot held; the ledger has each grant's commit or release and each refusal."""
    views = {v.budget_id: v for v in gov.status(SUBJECT)}
    assert (views["slots"].used, views["slots"].reserved) == (0, 0)
    assert (views["tokens"].used, views["tokens"].reserved) == (tally.committed * 10, 0)
    assert gov.store.held_count() == 0
    outcomes = Counter((e.status.value, e.reason) for e in events(gov))
    assert outcomes == {
        ("success", None): tally.committed,
        ("released", "released"): tally.released,
        ("blocked", "concurrency_limited"): tally.refused,
    }
    live = gov.store.counters()
    gov.rebuild()
    assert gov.store.counters() == live


def test_32_clients_never_hold_more_than_10_slots(shared_url: str) -> None:
    with Governor(shared_url) as gov:
        budgets(gov)
    tally = in_processes(lease_clients, shared_url, THREADS, ROUNDS)
    assert tally.granted + tally.refused == PROCESSES * THREADS * ROUNDS
    assert (tally.violations, tally.odd_refusals) == (0, [])
    assert tally.most_reserved == SLOTS  # every slot was taken at some point: contended
    assert tally.refused > 0
    assert most_held(tally.held) <= SLOTS
    with Governor(shared_url) as gov:
        assert_every_lease_accounted_for(gov, tally)


def test_memory_threads_never_hold_more_than_10_slots() -> None:
    store = MemoryStore()
    budgets(Governor(store))
    tally = lease_clients(store, PROCESSES * THREADS, ROUNDS, seed=0)
    assert (tally.violations, tally.odd_refusals, tally.most_reserved) == (0, [], SLOTS)
    assert most_held(tally.held) <= SLOTS
    assert_every_lease_accounted_for(Governor(store), tally)


def test_a_rolling_window_admits_exactly_its_limit_across_processes(shared_url: str) -> None:
    with Governor(shared_url) as gov:
        gov.create_budget({"id": "rpm", "tenant": "race", "meter": "requests",
                           "window": "rolling:60", "limit": RATE})  # fmt: skip
    started = time.monotonic()
    tally = in_processes(rate_clients, shared_url, THREADS, 4)
    took = time.monotonic() - started
    assert took < 50, "the race outlasted the window: calls left it before it ended"
    assert PROCESSES * THREADS * 4 > 2 * RATE  # the window really is contended
    assert (tally.committed, tally.violations, tally.odd_refusals) == (RATE, 0, [])
    with Governor(shared_url) as gov:
        [view] = gov.status(SUBJECT)
        assert (view.used, view.reserved, view.remaining) == (RATE, 0, 0)
        refused = gov.authorize("late", SUBJECT, "openai", "gpt-4o", RUN)
        assert refused.reason is Reason.RATE_LIMITED
        # The earliest calls leave the window at most 61 s after they were made.
        assert refused.retry_at is not None
        now = datetime.now(UTC)
        assert now < refused.retry_at <= now + timedelta(seconds=61)


def test_a_client_that_dies_holding_leases_frees_them_after_the_ttl(shared_url: str) -> None:
    with Governor(shared_url) as gov:  # open before the client dies: asks at once after
        budgets(gov)
        dying = SPAWN.Process(target=die_holding, args=(shared_url, SLOTS, 1))
        dying.start()
        dying.join(60)
        assert dying.exitcode == 0  # it took every slot, then died holding them
        refused = gov.authorize("next", SUBJECT, "openai", "gpt-4o", RUN, ttl=30)
        assert refused.reason is Reason.CONCURRENCY_LIMITED
        assert refused.retry_at is not None
        assert refused.retry_at <= datetime.now(UTC) + timedelta(seconds=1)
        # Past the retry time (the soonest dead lease's expiry) and the ten leases' spread.
        time.sleep(max(0.0, (refused.retry_at - datetime.now(UTC)).total_seconds()) + 0.5)
        for i in range(SLOTS):
            assert gov.authorize(f"next-{i}", SUBJECT, "openai", "gpt-4o", RUN, ttl=30).allowed
        assert gov.authorize("one-too-many", SUBJECT, "openai", "gpt-4o", RUN).reason is (
            Reason.CONCURRENCY_LIMITED
        )
        reclaimed = {e.request_id for e in events(gov) if e.reason == "lease_expired"}
        assert reclaimed == {f"dead-{i}" for i in range(SLOTS)}
        assert [v.reserved for v in gov.status(SUBJECT) if v.budget_id == "slots"] == [SLOTS]
        beat = gov.heartbeat("dead-0")
        assert (beat.alive, beat.stop, beat.reason) == (False, True, "released")


def test_a_full_window_refuses_a_call_that_read_the_clock_a_moment_earlier(
    make_governor: Callable[..., Governor], clock: Clock
) -> None:
    """What the race above meets at a second boundary, without a race: a call reads the
    clock (12:00:00.999), then waits for the store while another (12:00:01.000) fills
    the window; the window is full whichever second either call counts in."""
    clock.now = clock.now.replace(microsecond=999_000)
    early = make_governor()
    late = make_governor(clock=lambda: clock.now + timedelta(milliseconds=1))
    late.create_budget({"id": "rpm", "tenant": "race", "meter": "requests",
                        "window": "rolling:60", "limit": 3})  # fmt: skip
    for i in range(3):
        assert late.authorize(f"late-{i}", SUBJECT, "openai", "gpt-4o", RUN).allowed
    assert late.authorize("late-3", SUBJECT, "openai", "gpt-4o", RUN).reason is (
        Reason.RATE_LIMITED
    )
    assert early.authorize("early", SUBJECT, "openai", "gpt-4o", RUN).reason is (
        Reason.RATE_LIMITED
    )
