"""Workers for the lease and rate-limit race tests: threads racing for slots and for
a rolling window, and a client that dies holding leases.

Lives in its own module so spawned processes can import it.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from allotment.core.decisions import Decision, Reason
from allotment.governor import Governor
from allotment.store.base import Store

SUBJECT = {"tenant": "race", "agent": "a"}


class Waiter(Protocol):
    """A barrier, e.g. a ``multiprocessing.Manager().Barrier`` the processes share."""

    def wait(self) -> object: ...


RUN = {"input_tokens": 10}


@dataclass
class Tally:
    """What the clients of one process saw."""

    committed: int = 0
    released: int = 0
    refused: int = 0
    #: grants whose decision showed a budget past its limit, or no slot of its own
    violations: int = 0
    #: refusals for any reason but the one expected, or without a time to retry
    odd_refusals: list[str] = field(default_factory=list)
    #: (time.monotonic() once granted, time.monotonic() before giving it back): a span
    #: in which the lease surely held its slot; the clock is the machine's, shared by
    #: every process
    held: list[tuple[float, float]] = field(default_factory=list)
    #: the most slots a granted decision saw taken (its own included)
    most_reserved: int = 0

    def add(self, other: Tally) -> None:
        self.committed += other.committed
        self.released += other.released
        self.refused += other.refused
        self.violations += other.violations
        self.odd_refusals += other.odd_refusals
        self.held += other.held
        self.most_reserved = max(self.most_reserved, other.most_reserved)

    @property
    def granted(self) -> int:
        return self.committed + self.released


def over_limit(decision: Decision) -> bool:
    """Whether a granted ``decision`` shows a budget past its limit, or a slot it lacks."""
    for view in decision.budgets:
        if view.limit is not None and view.used + view.reserved > view.limit:
            return True
        if view.meter == "concurrency" and (view.used != 0 or view.reserved < 1):
            return True  # its own slot is in ``reserved``; ``used`` never grows
    return False


def slots_taken(decision: Decision) -> int:
    """How many slots of the concurrency budget ``decision`` shows taken."""
    return max((v.reserved for v in decision.budgets if v.meter == "concurrency"), default=0)


def lease_clients(
    target: str | Store, threads: int, rounds: int, seed: int, start: Waiter | None = None
) -> Tally:
    """``threads`` clients, each ``rounds`` times: take a lease (a slot and a token
    estimate), hold it a few milliseconds, then commit or release it.

    ``start`` (a barrier shared by the processes) holds them until every one is ready.
    """
    governor = Governor(target)
    barrier = threading.Barrier(threads, action=None if start is None else start.wait)

    def client(n: int) -> Tally:
        rng = random.Random(seed * 1000 + n)
        tally = Tally()
        barrier.wait()
        for _ in range(rounds):
            rid = uuid.uuid4().hex
            decision = governor.authorize(rid, SUBJECT, "openai", "gpt-4o", RUN, ttl=60)
            if not decision.allowed:
                tally.refused += 1
                if decision.reason is not Reason.CONCURRENCY_LIMITED or not decision.retry_at:
                    tally.odd_refusals.append(f"{decision.reason} retry_at={decision.retry_at}")
                time.sleep(rng.uniform(0, 0.005))
                continue
            start = time.monotonic()
            tally.violations += over_limit(decision)
            tally.most_reserved = max(tally.most_reserved, slots_taken(decision))
            time.sleep(rng.uniform(0.005, 0.03))
            tally.held.append((start, time.monotonic()))
            if rng.random() < 0.5:
                governor.commit(rid, RUN)
                tally.committed += 1
            else:
                governor.release(rid)
                tally.released += 1
        return tally

    total = Tally()
    try:
        with ThreadPoolExecutor(threads) as pool:
            for tally in pool.map(client, range(threads)):
                total.add(tally)
    finally:
        if isinstance(target, str):
            governor.close()
    return total


def rate_clients(
    url: str, threads: int, attempts: int, _seed: int = 0, start: Waiter | None = None
) -> Tally:
    """``threads`` clients, each ``attempts`` calls as fast as they are answered: every
    allowed one committed (its request stays in the window)."""
    governor = Governor(url)
    barrier = threading.Barrier(threads, action=None if start is None else start.wait)

    def client(_: int) -> Tally:
        tally = Tally()
        barrier.wait()
        for _ in range(attempts):
            rid = uuid.uuid4().hex
            decision = governor.authorize(rid, SUBJECT, "openai", "gpt-4o", RUN)
            if not decision.allowed:
                tally.refused += 1
                if decision.reason is not Reason.RATE_LIMITED or not decision.retry_at:
                    tally.odd_refusals.append(f"{decision.reason} retry_at={decision.retry_at}")
                continue
            tally.violations += over_limit(decision)
            governor.commit(rid, RUN)
            tally.committed += 1
        return tally

    total = Tally()
    try:
        with ThreadPoolExecutor(threads) as pool:
            for tally in pool.map(client, range(threads)):
                total.add(tally)
    finally:
        governor.close()
    return total


def die_holding(url: str, leases: int, ttl: int) -> None:
    """Take ``leases`` leases and die at once: no release, no close, no cleanup."""
    governor = Governor(url)
    for i in range(leases):
        decision = governor.authorize(f"dead-{i}", SUBJECT, "openai", "gpt-4o", RUN, ttl=ttl)
        if not decision.allowed:
            os._exit(1)
    os._exit(0)


def most_held(spans: list[tuple[float, float]]) -> int:
    """The most ``spans`` that overlap at any one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in edges:  # at a tie, an end (-1) sorts before a start: no false overlap
        now += step
        most = max(most, now)
    return most
