"""Several ``allotment serve`` instances on one PostgreSQL: one set of hard caps.

Two instances with two workers each share a database; clients spread over
both race for one budget. Exactly N get through; with estimates that differ
from actual usage, spend stays within the cap plus the overshoots the
commits report. One instance is SIGKILLed mid-load: no acknowledged commit
is lost, its reservations are reclaimed after their TTL, and the other
instance keeps serving.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from allotment.core.ledger import Event
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.conftest import drop_postgres, fresh_postgres_url
from tests.e2e.server import Instance, service_key
from tests.store.lease_race_worker import most_held

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

N = 150
CLIENTS = 64


@pytest.fixture
def instances() -> Iterator[tuple[str, list[Instance]]]:
    url = fresh_postgres_url(pool="4")
    started: list[Instance] = []
    try:
        with ThreadPoolExecutor(2) as pool:  # started together, as a rollout would
            futures = [pool.submit(Instance, url, 2) for _ in range(2)]
        failures = [f.exception() for f in futures if f.exception() is not None]
        started.extend(f.result() for f in futures if f.exception() is None)
        if failures:
            raise failures[0]  # the ones that did start are stopped below
        yield url, started
    finally:
        for instance in started:
            instance.stop()
        drop_postgres(url)


def _budget(limit: int) -> dict[str, object]:
    return {"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day", "limit": limit}


async def _client(
    base: str, headers: dict[str, str], worker: int, attempts: int, sizes: tuple[int, int]
) -> tuple[int, int]:
    """Authorize+commit ``attempts`` times; returns (allowed, overshoot reported)."""
    allowed = overshoot = 0
    rng = random.Random(worker)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for i in range(attempts):
            rid = f"w{worker}-{i}"
            estimate, actual = (
                sizes if sizes[0] == sizes[1] else (rng.randint(*sizes), rng.randint(*sizes))
            )
            body = {"request_id": rid, "subject": {"tenant": "acme", "user": f"u{worker}"},
                    "provider": "openai", "model": "gpt-4o-mini",
                    "estimate": {"output_tokens": estimate}}  # fmt: skip
            response = await client.post("/v1/authorize", json=body)
            if response.status_code != 200:
                assert response.status_code == 402, response.text
                continue
            allowed += 1
            commit = {"request_id": rid, "usage": {"output_tokens": actual}}
            done = await client.post("/v1/commit", json=commit)
            done.raise_for_status()
            overshoot += max(0, max(a["difference"] for a in done.json()["adjustments"]))
    return allowed, overshoot


def _spread(
    bases: list[str], headers: dict[str, str], attempts: int, sizes: tuple[int, int]
) -> list[tuple[int, int]]:
    async def race() -> list[tuple[int, int]]:
        return await asyncio.gather(
            *(_client(bases[w % len(bases)], headers, w, attempts, sizes) for w in range(CLIENTS))
        )

    return asyncio.run(race())


def _events(gov: Governor) -> list[Event]:
    events: list[Event] = []
    while page := gov.events(
        EventQuery(tenant="acme", after_id=events[-1].id or 0 if events else 0, limit=1000)
    ):
        events += page
    return events


def _ledger_and_counters_agree(url: str) -> int:
    with Governor(url) as gov:
        events = _events(gov)
        spent = sum(e.usage.tokens for e in events if e.status.counts)
        view = gov.status({"tenant": "acme"})[0]
        assert (view.used, view.reserved) == (spent, 0)
        live = gov.store.counters()
        gov.rebuild()
        assert gov.store.counters() == live
        return spent


def test_two_instances_exactly_n(instances: tuple[str, list[Instance]]) -> None:
    url, both = instances
    headers = {"Authorization": f"Bearer {service_key(both[0].base, 'acme', _budget(N * 100))}"}
    results = _spread([i.base for i in both], headers, attempts=4, sizes=(100, 100))
    assert sum(a for a, _ in results) == N  # 256 attempts for 150 slots
    assert _ledger_and_counters_agree(url) == N * 100


def test_two_instances_random_estimates_within_cap_plus_reported_overshoot(
    instances: tuple[str, list[Instance]],
) -> None:
    url, both = instances
    cap = N * 100
    headers = {"Authorization": f"Bearer {service_key(both[0].base, 'acme', _budget(cap))}"}
    results = _spread([i.base for i in both], headers, attempts=4, sizes=(20, 180))
    overshoot = sum(o for _, o in results)
    spent = _ledger_and_counters_agree(url)
    assert spent <= cap + overshoot
    assert spent > cap // 2  # the budget really was contended


def test_sigkill_one_instance_mid_load(instances: tuple[str, list[Instance]]) -> None:
    url, (victim, survivor) = instances
    budget = {**_budget(10**9), "id": "big"}
    headers = {"Authorization": f"Bearer {service_key(survivor.base, 'acme', budget)}"}
    acknowledged: list[str] = []
    held_on_victim: list[str] = []
    survivor_failures = 0

    async def worker(w: int, base: str, stop: asyncio.Event) -> None:
        nonlocal survivor_failures
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
            i = 0
            while not stop.is_set():
                rid = f"k{w}-{i}"
                i += 1
                body = {"request_id": rid, "subject": {"tenant": "acme"}, "provider": "openai",
                        "model": "gpt-4o-mini", "estimate": {"output_tokens": 10},
                        "ttl_seconds": 2}  # fmt: skip
                try:
                    granted = await client.post("/v1/authorize", json=body)
                    if granted.status_code != 200:
                        continue
                    if base == victim.base and i % 3 == 0:
                        held_on_victim.append(rid)  # authorized, never committed
                        continue
                    done = await client.post(
                        "/v1/commit", json={"request_id": rid, "usage": {"output_tokens": 10}}
                    )
                    if done.status_code == 200:
                        acknowledged.append(rid)
                except httpx.TransportError:
                    if base == survivor.base:
                        survivor_failures += 1
                    await asyncio.sleep(0.05)

    async def load() -> int:
        stop = asyncio.Event()
        bases = [victim.base, survivor.base]
        tasks = [asyncio.create_task(worker(w, bases[w % 2], stop)) for w in range(16)]
        # Kill mid-load: once both instances are serving (their workers warm up at
        # their own pace, slower when the machine is busy), and a while after that.
        deadline = time.monotonic() + 20
        while (len(acknowledged) < 10 or not held_on_victim) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        before = len(acknowledged)
        await asyncio.to_thread(victim.kill)
        killed_at = len(acknowledged)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*tasks)
        assert killed_at >= before >= 10  # the load was running when the kill came
        return len(acknowledged) - killed_at

    after_kill = asyncio.run(load())
    assert after_kill > 20  # the survivor kept serving
    assert survivor_failures == 0
    assert held_on_victim
    with Governor(url) as gov:
        logged = {e.request_id for e in _events(gov) if e.status.value == "success"}
        assert set(acknowledged) <= logged  # nothing acknowledged was lost
    with Governor(url) as gov:  # past every TTL (2 s), the survivor's sweep (every 1 s)
        deadline = time.monotonic() + 10
        while gov.store.held_count() and time.monotonic() < deadline:
            time.sleep(0.1)
        expired = {e.request_id for e in _events(gov) if e.reason == "expired"}
        assert set(held_on_victim) <= expired
        assert gov.store.held_count() == 0
        assert gov.status({"tenant": "acme"})[0].reserved == 0


def test_two_instances_draw_one_credit_pool_exactly(instances: tuple[str, list[Instance]]) -> None:
    """A period budget and three grants worth exactly N calls, raced through both
    instances (issue 18): exactly N allowed, no grant overdrawn, no debt."""
    url, both = instances
    allowance, grants = 30, (60, 40, 20)
    pool = {**_budget(allowance * 100), "window": "month", "credits": True}
    headers = {"Authorization": f"Bearer {service_key(both[0].base, 'acme', pool)}"}
    with Governor(url) as gov:
        for i, calls in enumerate(grants):
            gov.add_grant("cap", calls * 100, grant_id=f"g{i}", priority=i)
    results = _spread([i.base for i in both], headers, attempts=4, sizes=(100, 100))
    total = allowance + sum(grants)
    assert sum(a for a, _ in results) == total  # 256 attempts for 150 calls
    with Governor(url) as gov:
        spent = sum(e.usage.tokens for e in _events(gov) if e.status.counts)
        assert spent == total * 100
        status = gov.pool("cap")
        assert (status.available, status.debt) == (0, 0)
        assert [(g.used, g.reserved) for g in status.grants] == [(c * 100, 0) for c in grants]
        live = gov.store.counters()
        gov.rebuild()
        assert gov.store.counters() == live


SLOTS = 10
RATE = 50  # requests per rolling minute


def _lease_body(rid: str, worker: int) -> dict[str, object]:
    return {"request_id": rid, "subject": {"tenant": "acme", "agent": f"a{worker}"},
            "provider": "openai", "model": "gpt-4o-mini", "estimate": {"output_tokens": 10},
            "ttl_seconds": 30}  # fmt: skip


def _refused_with_retry_after(response: httpx.Response, code: str, most: int) -> bool:
    """Whether ``response`` is a 429 ``code`` with a ``Retry-After`` of 0 to ``most`` s."""
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == code
    return 0 <= int(response.headers["Retry-After"]) <= most


async def _lease_client(
    base: str, headers: dict[str, str], worker: int, rounds: int
) -> tuple[list[tuple[float, float]], Counter[str]]:
    """Take a lease ``rounds`` times: hold it a few ms, then commit or release it.

    Returns the spans in which it surely held a slot (``time.monotonic()`` from the
    200 to the commit or release), and a count of its outcomes.
    """
    rng = random.Random(worker)
    spans: list[tuple[float, float]] = []
    seen: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for i in range(rounds):
            rid = f"l{worker}-{i}"
            response = await client.post("/v1/authorize", json=_lease_body(rid, worker))
            if response.status_code != 200:
                seen["refused"] += 1
                seen["bad_retry_after"] += not _refused_with_retry_after(
                    response, "concurrency_limited", 30
                )
                await asyncio.sleep(rng.uniform(0, 0.01))
                continue
            start = time.monotonic()
            [view] = [v for v in response.json()["budgets"] if v["meter"] == "concurrency"]
            seen["over"] += not 1 <= view["reserved"] <= SLOTS  # its own slot included
            await asyncio.sleep(rng.uniform(0, 0.02))
            spans.append((start, time.monotonic()))
            if rng.random() < 0.5:
                done = await client.post("/v1/commit", json={"request_id": rid,
                                         "usage": {"output_tokens": 10}})  # fmt: skip
                seen["committed"] += 1
            else:
                done = await client.post("/v1/release", json={"request_id": rid})
                seen["released"] += 1
            done.raise_for_status()
    return spans, seen


def test_two_instances_never_hold_more_than_ten_slots(
    instances: tuple[str, list[Instance]],
) -> None:
    """32 clients spread over both instances race for 10 slots of a concurrency budget
    (issue 19): no answer shows more than 10 taken, no more than 10 are ever held at
    once, every refusal is a 429 with ``Retry-After``, and none is held at the end."""
    url, both = instances
    slots = {"id": "slots", "tenant": "acme", "meter": "concurrency", "window": "lifetime",
             "limit": SLOTS}  # fmt: skip
    headers = {"Authorization": f"Bearer {service_key(both[0].base, 'acme', slots)}"}
    bases = [i.base for i in both]

    async def race() -> list[tuple[list[tuple[float, float]], Counter[str]]]:
        return await asyncio.gather(
            *(_lease_client(bases[w % 2], headers, w, rounds=6) for w in range(32))
        )

    results = asyncio.run(race())
    spans = [span for s, _ in results for span in s]
    seen = sum((c for _, c in results), Counter[str]())
    assert (seen["over"], seen["bad_retry_after"]) == (0, 0)
    assert seen["refused"] > 0 and len(spans) > SLOTS  # the slots really were contended
    assert most_held(spans) <= SLOTS
    with Governor(url) as gov:
        [view] = gov.status({"tenant": "acme", "agent": "a0"})
        assert (view.used, view.reserved) == (0, 0)
        assert gov.store.held_count() == 0
        outcomes = Counter(e.status.value for e in _events(gov))
        assert outcomes == Counter({"success": seen["committed"], "released": seen["released"],
                                    "blocked": seen["refused"]})  # fmt: skip
        live = gov.store.counters()
        gov.rebuild()
        assert gov.store.counters() == live


async def _rate_client(
    base: str, headers: dict[str, str], worker: int, attempts: int
) -> Counter[str]:
    """Call ``attempts`` times as fast as answered, committing each allowed call."""
    seen: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for i in range(attempts):
            rid = f"r{worker}-{i}"
            body = _lease_body(rid, worker) | {"ttl_seconds": None}
            response = await client.post("/v1/authorize", json=body)
            if response.status_code != 200:
                seen["refused"] += 1
                seen["bad_retry_after"] += not _refused_with_retry_after(
                    response, "rate_limited", 61
                )
                continue
            seen["allowed"] += 1
            assert "RateLimit-Policy" in response.headers
            done = await client.post(
                "/v1/commit", json={"request_id": rid, "usage": {"output_tokens": 10}}
            )
            done.raise_for_status()
    return seen


def test_two_instances_hold_a_rolling_rate_limit_exactly(
    instances: tuple[str, list[Instance]],
) -> None:
    """128 calls in a few seconds through both instances for a limit of 50 requests per
    rolling minute (issue 19): exactly 50 get through, the rest are 429s."""
    url, both = instances
    rpm = {"id": "rpm", "tenant": "acme", "meter": "requests", "window": "rolling:60",
           "limit": RATE}  # fmt: skip
    headers = {"Authorization": f"Bearer {service_key(both[0].base, 'acme', rpm)}"}
    bases = [i.base for i in both]
    started = time.monotonic()

    async def race() -> list[Counter[str]]:
        return await asyncio.gather(
            *(_rate_client(bases[w % 2], headers, w, attempts=4) for w in range(32))
        )

    seen = sum(asyncio.run(race()), Counter[str]())
    assert time.monotonic() - started < 50, "the race outlasted the window"
    assert (seen["allowed"], seen["refused"], seen["bad_retry_after"]) == (RATE, 128 - RATE, 0)
    with Governor(url) as gov:
        [view] = gov.status({"tenant": "acme", "agent": "a0"})
        assert (view.used, view.reserved, view.remaining) == (RATE, 0, 0)
        assert sum(e.status.value == "success" for e in _events(gov)) == RATE
