"""Group commit (SQLite and PostgreSQL): calls that arrive together share a transaction.

Each call must still be answered exactly as if it had run alone, and a bad
call must fail only itself.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from allotment.errors import ConflictError
from allotment.governor import Governor
from allotment.store._batch import Batcher, Item
from allotment.store._transactional import GroupCommitStore
from tests.conftest import Clock

SUBJECT = {"tenant": "acme", "user": "ann", "agent": "bot"}


def test_batches_answer_each_caller_as_if_alone(shared_url: str, clock: Clock) -> None:
    """Calls that arrive together share a transaction; a bad one fails only itself."""
    gov = Governor(shared_url, clock=clock)
    gov.create_budget({"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 10_000})  # fmt: skip
    gov.create_budget({"id": "per-user", "tenant": "acme", "meter": "tokens", "window": "day",
                       "per": "user", "limit": 300})  # fmt: skip
    gov.authorize("taken", SUBJECT, "openai", "gpt-4o", {"output_tokens": 1})
    threads = 16
    barrier = threading.Barrier(threads)

    def run(i: int) -> list[str]:
        outcomes = []
        for round_ in range(12):
            barrier.wait()
            subject = {**SUBJECT, "user": f"u{i % 4}"}
            rid = "taken" if i == 0 and round_ % 3 == 0 else f"{i}-{round_}"
            try:
                decision = gov.authorize(rid, subject, "openai", "gpt-4o", {"output_tokens": 10})
            except ConflictError:
                outcomes.append("conflict")
                continue
            if decision.allowed:
                gov.commit(rid, {"output_tokens": 8 + i % 3})  # never above the estimate
                outcomes.append("allowed")
            else:
                outcomes.append(decision.refusals[0].reason.value)
        return outcomes

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(run, range(threads)))
    assert outcomes[0].count("conflict") == 4
    assert all("conflict" not in o for o in outcomes[1:])
    store = gov.store
    assert isinstance(store, GroupCommitStore) and store.batches > 0
    for user in range(4):
        view = gov.status({**SUBJECT, "user": f"u{user}"})[1]
        assert view.used + view.reserved <= 300
    live = store.counters()
    gov.rebuild()
    assert store.counters() == live
    gov.close()


def test_same_request_id_twice_in_one_batch_replays(shared_url: str, clock: Clock) -> None:
    gov = Governor(shared_url, clock=clock)
    gov.create_budget({"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 10_000})  # fmt: skip
    barrier = threading.Barrier(8)

    def run(_: int) -> bool:
        barrier.wait()
        return gov.authorize("same", SUBJECT, "openai", "gpt-4o", {"output_tokens": 10}).replayed

    with ThreadPoolExecutor(8) as pool:
        replayed = list(pool.map(run, range(8)))
    assert replayed.count(False) == 1
    assert gov.status(SUBJECT)[0].reserved == 10
    gov.close()


def test_batcher_answers_everyone_and_keeps_going_when_a_batch_blows_up() -> None:
    """A batch runner that raises fails its callers, and the next callers still get served."""
    calls: list[int] = []

    def run(batch: list[Item]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        for item in batch:
            item.result = "ok"

    batcher = Batcher(run)
    barrier = threading.Barrier(8)

    def submit(_: int) -> str:
        barrier.wait()
        try:
            return str(batcher.submit(Item(None, None)))  # type: ignore[arg-type]
        except RuntimeError:
            return "boom"

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(submit, range(8)))
    assert "boom" in first and sum(calls) == 8
    assert batcher.submit(Item(None, None)) == "ok"  # type: ignore[arg-type]


def test_coroutines_and_threads_share_batches_exactly_n(shared_url: str, clock: Clock) -> None:
    """Awaited calls (the service, AsyncGovernor) and threads queue for the same batches."""
    n = 60
    gov = Governor(shared_url, clock=clock)
    gov.create_budget({"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": n * 10})  # fmt: skip

    async def coroutine(i: int) -> int:
        allowed = 0
        for j in range(4):
            rid = f"c{i}-{j}"
            decision = await gov.authorize_async(rid, SUBJECT, "openai", "gpt-4o",
                                                 {"output_tokens": 10})  # fmt: skip
            if decision.allowed:
                allowed += 1
                await gov.commit_async(rid, {"output_tokens": 10})
        return allowed

    def thread(i: int) -> int:
        allowed = 0
        for j in range(4):
            rid = f"t{i}-{j}"
            if gov.authorize(rid, SUBJECT, "openai", "gpt-4o", {"output_tokens": 10}).allowed:
                allowed += 1
                gov.commit(rid, {"output_tokens": 10})
        return allowed

    async def both() -> int:
        threads = [asyncio.to_thread(thread, i) for i in range(8)]
        return sum(await asyncio.gather(*(coroutine(i) for i in range(24)), *threads))

    assert asyncio.run(both()) == n  # 128 attempts for 60 slots
    view = gov.status(SUBJECT)[0]
    assert (view.used, view.reserved) == (n * 10, 0)
    gov.close()


def test_post_hoc_commits_batch_with_authorizations(shared_url: str, clock: Clock) -> None:
    """Commits of calls never authorized batch with authorizations, and count once."""
    gov = Governor(shared_url, clock=clock)
    gov.create_budget({"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 10**9})  # fmt: skip
    barrier = threading.Barrier(12)

    def run(i: int) -> None:
        barrier.wait()
        for j in range(10):
            rid = f"{i}-{j}"
            if i % 2:
                gov.commit(rid, {"output_tokens": 3}, subject=SUBJECT, provider="openai",
                           model="gpt-4o")  # fmt: skip
            elif gov.authorize(rid, SUBJECT, "openai", "gpt-4o", {"output_tokens": 5}).allowed:
                gov.commit(rid, {"output_tokens": 5})

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(run, range(12)))
    store = gov.store
    assert isinstance(store, GroupCommitStore) and store.batches > 0
    assert store.batch_fallbacks == 0
    assert gov.status(SUBJECT)[0].used == 6 * 10 * 3 + 6 * 10 * 5
    gov.close()


def test_sqlite_batches_wait_for_a_held_lock_off_the_event_loop(
    tmp_path: Path, clock: Clock
) -> None:
    """With another process's writer holding the database, the loop keeps running."""
    import fcntl
    import os
    import time

    url = f"sqlite:///{tmp_path / 'held.db'}"
    gov = Governor(url, clock=clock)
    gov.create_budget({"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 1000})  # fmt: skip
    # A first call sweeps expired holds (in a thread); the next goes straight to the batcher.
    asyncio.run(gov.authorize_async("r0", SUBJECT, "openai", "gpt-4o", {"output_tokens": 1}))
    other = os.open(f"{tmp_path / 'held.db'}-writer.lock", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)  # as an archive run in another process would

    async def scenario() -> tuple[int, bool]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        threading.Timer(0.3, fcntl.flock, (other, fcntl.LOCK_UN)).start()
        started = time.monotonic()
        decision = await gov.authorize_async("r1", SUBJECT, "openai", "gpt-4o",
                                             {"output_tokens": 10})  # fmt: skip
        assert time.monotonic() - started >= 0.25  # it did wait for the lock
        task.cancel()
        return ticks, decision.allowed

    ticks, allowed = asyncio.run(scenario())
    os.close(other)
    assert allowed
    assert ticks >= 10  # the loop ran on while the call waited
    gov.close()


def test_a_late_commit_is_in_the_lock_plan(tmp_path: Path, clock: Clock) -> None:
    """A late commit reads its budgets' counters (to report late overshoot): the batch
    locks them in the global order with the rest, not on demand."""
    from allotment.store._batch import lock_plan
    from allotment.store.base import CommitRequest

    gov = Governor(f"sqlite:///{tmp_path / 'p.db'}", clock=clock)
    gov.create_budget({"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 100})  # fmt: skip
    gov.authorize("late", SUBJECT, "openai", "gpt-4o", {"output_tokens": 10}, ttl=1)
    clock.advance(seconds=2)
    assert gov.sweep() == 1
    store = gov.store
    assert isinstance(store, GroupCommitStore)
    request: CommitRequest = gov._commit_request(
        "late", {"output_tokens": 5}, "success", None, None, None, None, None
    )
    item = Item(request, clock.now)
    with store._transaction() as tx:
        reservations = {"late": tx.reservations("late")}
        planned = lock_plan(tx, [item], reservations)
    assert {key[0] for key in planned} == {"acme#cap"}  # counters are keyed by Budget.key


def test_a_rolling_window_counts_exactly_in_a_batch(shared_url: str, clock: Clock) -> None:
    """A batch answers a rolling window from the rows it holds and one sum of the rest:
    earlier buckets (some committed in the batch itself) and the current one together
    admit exactly the limit, as calls run alone would."""
    gov = Governor(shared_url, clock=clock)
    gov.create_budget({"id": "rpm", "tenant": "acme", "meter": "tokens",
                       "window": "rolling:60", "limit": 1_000})  # fmt: skip
    for second in range(0, 40, 10):  # 4 x 100 held in earlier buckets
        gov.authorize(f"early-{second}", SUBJECT, "openai", "gpt-4o", {"output_tokens": 100})
        clock.advance(seconds=10)
    threads = 16
    barrier = threading.Barrier(threads)

    def run(i: int) -> bool:
        barrier.wait()
        if i < 4:  # commits of earlier buckets' calls, using less than they held
            gov.commit(f"early-{i * 10}", {"output_tokens": 50})
            return False
        return gov.authorize(f"r{i}", SUBJECT, "openai", "gpt-4o", {"output_tokens": 100}).allowed

    with ThreadPoolExecutor(threads) as pool:
        allowed = sum(pool.map(run, range(threads)))
    [view] = gov.status(SUBJECT)
    # 12 calls of 100 race for what the early four leave: 1000 - 4 x 50 at least, 600 at most
    assert 6 <= allowed <= 8
    assert view.used + view.reserved <= 1_000
    assert view.used + view.reserved == 4 * 50 + allowed * 100
