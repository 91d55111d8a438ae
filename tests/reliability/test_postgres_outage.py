"""PostgreSQL stops under load, then comes back: nobody hangs, nothing is lost.

A private server (``initdb`` in a temporary directory, its own port) serves a
Governor under load from coroutines (the service's group-commit path) and
threads, and then a real HTTP service. Midway the server is stopped
(``pg_ctl stop -m immediate``, as a crash) and later started again. Every
call during the outage must be answered within ``pool_timeout`` plus slack,
with ``StoreError`` (HTTP 503) or a degraded allow for a ``fail_open``
budget; calls must succeed again soon after the server is back; every commit
that was acknowledged is in the ledger, none twice, and the counters equal a
rebuild from the ledger.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from allotment.errors import ConfigurationError, StoreError
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.e2e.server import free_port

#: What a call may take while the store is down: ``pool_timeout`` (1 s) plus slack
#: for a loaded two-core machine.
ANSWER_WITHIN = 2.0
#: How soon after the server is back calls must succeed again (1 s plus slack).
BACK_WITHIN = 2.0
TENANTS = {"open": "fail_open", "closed": "fail_closed"}


def postgres_binaries() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: skipped without them, failed in CI."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    path = Path(found[-1]).parent if found else None
    if path is None and (initdb := shutil.which("initdb")) is not None:
        path = Path(initdb).parent
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs the PostgreSQL server binaries (initdb, pg_ctl)")
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl)")
    return path


class PrivatePostgres:
    """A PostgreSQL server of the test's own, in a temporary directory."""

    def __init__(self) -> None:
        self._bin = postgres_binaries()
        # initdb refuses to run as root: then the server runs as the postgres user.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.root = Path(tempfile.mkdtemp(prefix="allotment-pg-"))
        if self._as:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", self._data, "-U", "postgres", "-A", "trust", "--no-sync")

    @property
    def _data(self) -> str:
        return str(self.root / "data")

    def _run(self, tool: str, *args: str) -> None:
        command = [*self._as, str(self._bin / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", self._data, "-l", log, "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop at once, as a crash would: connections drop, nothing is shut down cleanly."""
        self._run("pg_ctl", "-D", self._data, "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            try:
                self.stop()
            except RuntimeError:
                pass  # already down
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@dataclass
class Answer:
    """One call: what it was, when it started and ended, and how it came out."""

    kind: str
    started: float
    ended: float
    outcome: str  # allowed, degraded, refused, ok, store_error, or "unexpected: ..."

    @property
    def took(self) -> float:
        return self.ended - self.started


#: authorize(request id, tenant) -> outcome, and commit(request id, tenant) -> outcome
Calls = tuple[Callable[[str, str], Awaitable[str]], Callable[[str, str], Awaitable[str]]]


@dataclass
class Load:
    """Callers that authorize and commit without pause, and what they saw."""

    calls: Calls
    answers: list[Answer] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # request id -> tenant
    unsettled: dict[str, str] = field(default_factory=dict)  # commits to retry
    running: bool = True

    async def caller(self, name: str, tenant: str) -> None:
        authorize = self.calls[0]
        n = 0
        while self.running:
            request_id = f"{name}-{n}"
            n += 1
            outcome = await self._timed("authorize", authorize(request_id, tenant))
            if outcome in ("allowed", "degraded"):
                await self.settle(request_id, tenant)
            await asyncio.sleep(0.01)

    async def settle(self, request_id: str, tenant: str) -> None:
        _, commit = self.calls
        if await self._timed("commit", commit(request_id, tenant)) == "ok":
            self.acknowledged[request_id] = tenant
            self.unsettled.pop(request_id, None)
        else:
            self.unsettled[request_id] = tenant  # the client retries later

    async def _timed(self, kind: str, call: Awaitable[str]) -> str:
        started = time.monotonic()
        try:
            outcome = await call
        except Exception as exc:  # anything but the outcomes the calls return is a failure
            outcome = f"unexpected: {exc!r}"
        self.answers.append(Answer(kind, started, time.monotonic(), outcome))
        return outcome


def library_calls(gov: Governor) -> Calls:
    """The Governor's coroutine faces: the group-commit path the service uses."""

    async def authorize(request_id: str, tenant: str) -> str:
        try:
            decision = await gov.authorize_async(
                request_id, {"tenant": tenant}, "openai", "gpt-4o", {"output_tokens": 10}
            )
        except StoreError:
            return "store_error"
        return "degraded" if decision.degraded else "allowed" if decision.allowed else "refused"

    async def commit(request_id: str, tenant: str) -> str:
        try:
            await gov.commit_async(request_id, {"output_tokens": 7}, subject={"tenant": tenant},
                                   provider="openai", model="gpt-4o")  # fmt: skip
        except StoreError:
            return "store_error"
        return "ok"

    return authorize, commit


def thread_calls(gov: Governor) -> Calls:
    """The Governor's plain faces, each call on a thread of its own."""

    async def authorize(request_id: str, tenant: str) -> str:
        def call() -> str:
            try:
                decision = gov.authorize(
                    request_id, {"tenant": tenant}, "openai", "gpt-4o", {"output_tokens": 10}
                )
            except StoreError:
                return "store_error"
            return "degraded" if decision.degraded else "allowed" if decision.allowed else "refused"

        return await asyncio.to_thread(call)

    async def commit(request_id: str, tenant: str) -> str:
        def call() -> str:
            try:
                gov.commit(request_id, {"output_tokens": 7}, subject={"tenant": tenant},
                           provider="openai", model="gpt-4o")  # fmt: skip
            except StoreError:
                return "store_error"
            return "ok"

        return await asyncio.to_thread(call)

    return authorize, commit


def http_calls(client: httpx.AsyncClient) -> Calls:
    """The HTTP service: 503 ``store_unavailable`` is the store error, anything else unexpected."""

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        answer = await client.post(path, json=body)
        if answer.status_code == 503 and answer.json()["error"]["code"] == "store_unavailable":
            return None
        if answer.status_code != 200:
            raise AssertionError(f"{path}: {answer.status_code} {answer.text}")
        result: dict[str, Any] = answer.json()
        return result

    async def authorize(request_id: str, tenant: str) -> str:
        decision = await post("/v1/authorize", {
            "request_id": request_id, "subject": {"tenant": tenant}, "provider": "openai",
            "model": "gpt-4o", "estimate": {"output_tokens": 10}})  # fmt: skip
        if decision is None:
            return "store_error"
        return "degraded" if decision.get("degraded") else "allowed"

    async def commit(request_id: str, tenant: str) -> str:
        result = await post("/v1/commit", {
            "request_id": request_id, "usage": {"output_tokens": 7}, "subject": {"tenant": tenant},
            "provider": "openai", "model": "gpt-4o"})  # fmt: skip
        return "store_error" if result is None else "ok"

    return authorize, commit


@dataclass
class Timeline:
    down: float = 0.0  # the server has stopped (pg_ctl stop returned)
    starting: float = 0.0  # pg_ctl start began (the server may answer from here on)
    up: float = 0.0  # the server accepts connections (pg_ctl start returned)


async def outage(
    server: PrivatePostgres, loads: list[Load], callers: int, down_for: float = 3.0
) -> Timeline:
    """Run ``callers`` callers per load and tenant; stop the server midway, then start it."""
    timeline = Timeline()
    tasks = [
        asyncio.create_task(load.caller(f"l{i}-{tenant}-{c}", tenant))
        for i, load in enumerate(loads)
        for tenant in TENANTS
        for c in range(callers)
    ]
    await asyncio.sleep(1.0)  # the callers run against the live server first
    await asyncio.to_thread(server.stop)
    timeline.down = time.monotonic()
    await asyncio.sleep(down_for)
    timeline.starting = time.monotonic()
    await asyncio.to_thread(server.start)
    timeline.up = time.monotonic()
    await asyncio.sleep(BACK_WITHIN + 0.5)  # calls from BACK_WITHIN on must all succeed
    for load in loads:
        load.running = False
    # Calls that hang (10 s and more each before the fix) fail the test here.
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=ANSWER_WITHIN * 5)
    for load in loads:  # the clients retry what failed: request ids make that safe
        unsettled = list(load.unsettled.items())
        for start in range(0, len(unsettled), 32):
            await asyncio.gather(*(load.settle(*u) for u in unsettled[start : start + 32]))
    return timeline


def check(loads: list[Load], timeline: Timeline, gov: Governor) -> dict[str, float]:
    """Assert what an outage may and may not do; the measurements, for the report."""
    answers = [a for load in loads for a in load.answers]
    unexpected = {a.outcome for a in answers if a.outcome.startswith("unexpected")}
    assert not unexpected, unexpected
    slowest = max(a.took for a in answers)
    assert slowest <= ANSWER_WITHIN, f"a call took {slowest:.2f} s"
    during = [a for a in answers if timeline.down <= a.started and a.ended <= timeline.starting]
    assert during and {a.outcome for a in during} <= {"store_error", "degraded"}
    assert {a.outcome for a in during if a.kind == "authorize"} == {"store_error", "degraded"}
    after = sorted((a for a in answers if a.started >= timeline.up), key=lambda a: a.ended)
    back = next(a.ended for a in after if a.outcome in ("allowed", "ok")) - timeline.up
    assert back <= BACK_WITHIN, f"the first success came {back:.2f} s after the server"
    settled = [a for a in after if a.started >= timeline.up + BACK_WITHIN]
    assert settled and all(a.outcome in ("allowed", "ok") for a in settled)
    for load in loads:
        assert not load.unsettled
    assert_nothing_lost(gov, {r for load in loads for r in load.acknowledged})
    took = sorted(a.took for a in during)
    return {
        "calls during the outage": len(during),
        "median s during": took[len(took) // 2],
        "slowest s during": took[-1],
        "slowest s overall": slowest,
        "first success s after restart": back,
    }


def assert_nothing_lost(gov: Governor, acknowledged: set[str]) -> None:
    """Every acknowledged commit is in the ledger exactly once; counters equal a rebuild."""
    events, after = [], 0
    while page := gov.events(EventQuery(after_id=after, limit=10_000)):
        events += page
        after = page[-1].id or 0
    successes = [e.request_id for e in events if e.status.value == "success"]
    assert len(successes) == len(set(successes)), "a request id was counted twice"
    assert acknowledged <= set(successes), "an acknowledged commit is not in the ledger"
    live = gov.store.counters()
    gov.rebuild()
    assert gov.store.counters() == live


def governor(server: PrivatePostgres) -> Governor:
    gov = Governor(f"{server.url}?pool_timeout=1")
    for tenant, failure in TENANTS.items():
        gov.create_budget({"id": tenant, "tenant": tenant, "meter": "tokens", "window": "day",
                           "limit": 10**12, "failure": failure})  # fmt: skip
    return gov


@pytest.mark.slow
def test_library_calls_fail_fast_and_recover(private_postgres: PrivatePostgres) -> None:
    gov = governor(private_postgres)
    loads = [Load(library_calls(gov)), Load(thread_calls(gov))]
    try:
        timeline = asyncio.run(outage(private_postgres, loads, callers=6))
        report = check(loads, timeline, gov)
    finally:
        gov.close()
    print("library:", {k: round(v, 3) for k, v in report.items()})


@pytest.mark.slow
def test_service_answers_503_fast_and_recovers(private_postgres: PrivatePostgres) -> None:
    import uvicorn

    from allotment.api import create_app

    gov = governor(private_postgres)
    _, admin = gov.create_key("admin")
    port = free_port()
    server = uvicorn.Server(
        # Idle keep-alive connections stay open for the whole test: uvicorn's default 5 s
        # lets it close one just as the client reuses it (an httpx ReadError that has
        # nothing to do with the store's outage).
        uvicorn.Config(
            create_app(gov), host="127.0.0.1", port=port, log_level="error", timeout_keep_alive=120
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    async def run() -> tuple[Timeline, list[Load]]:
        headers = {"Authorization": f"Bearer {admin}"}
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers,
                                     timeout=30, limits=limits) as client:  # fmt: skip
            loads = [Load(http_calls(client))]
            return await outage(private_postgres, loads, callers=8), loads

    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        timeline, loads = asyncio.run(run())
        report = check(loads, timeline, gov)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        gov.close()
    print("service:", {k: round(v, 3) for k, v in report.items()})


def test_pool_timeout_is_a_url_option() -> None:
    pytest.importorskip("psycopg")
    from allotment.store.postgres import _parse_url, _pool_timeout

    url = "postgresql://u@h/db?pool_timeout=0.5&sslmode=disable"
    assert _pool_timeout(url) == 0.5
    assert _pool_timeout("postgresql://u@h/db") == 1.0
    assert _parse_url(url)[0] == "postgresql://u@h/db?sslmode=disable"
    for bad in ("0", "-1", "soon", "nan", "601"):
        with pytest.raises(ConfigurationError):
            _pool_timeout(f"postgresql://u@h/db?pool_timeout={bad}")
