"""User system 5 of DESIGN.md by configuration alone (issue 19): an agent orchestrator.

A daily token limit across all agents, a daily limit per agent, at most ten
agents running at once and a task duration of two hours at most. An agent
run is one authorize: a slot of the ``concurrency`` budget and the run's
token estimate, kept alive by a heartbeat every four minutes (a TTL of five)
and committed with what the run used. Token limits are hard (``enforce``) or
soft (``warn``). The summary: running agents against the cap, daily and
per-agent usage with states and percentages to two decimals.

Through the library on every store, then through the HTTP service (the
Python client over the app in-process, on the same store and clock).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app
from allotment.client import Client
from allotment.core.decisions import Reason, State
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.conftest import Clock

TENANT = "orch"
DAILY = 80_000  # tokens, across all agents
PER_AGENT = 20_000  # tokens a day, each agent
RUNNING = 10  # agents at once
TTL = 300  # a run's lease lives 5 minutes past its last heartbeat
BEAT = 240  # an agent heartbeats every 4 minutes
MAX = 7200  # 120 minutes: no heartbeat keeps a task longer

#: one face or the other: the same method names and arguments
Face = Governor | Client


def budgets(mode: str = "enforce", running_mode: str = "enforce") -> list[dict[str, Any]]:
    """System 5's configuration: token limits in ``mode``, the cap on running agents."""
    tokens = {"tenant": TENANT, "meter": "tokens", "window": "day", "mode": mode}
    return [
        tokens | {"id": "daily", "limit": DAILY},
        tokens | {"id": "per-agent", "limit": PER_AGENT, "per": "agent"},
        {"id": "running", "tenant": TENANT, "meter": "concurrency", "window": "lifetime",
         "limit": RUNNING, "mode": running_mode},
    ]  # fmt: skip


def configure(face: Face, mode: str = "enforce", running_mode: str = "enforce") -> None:
    for spec in budgets(mode, running_mode):
        face.create_budget(spec)


def agent(name: str) -> dict[str, str]:
    return {"tenant": TENANT, "agent": name}


def start(face: Face, name: str, tokens: int, run: str | None = None) -> Any:
    """Start a run of agent ``name``: a slot and its token estimate, in one authorize."""
    return face.authorize(run or f"run-{name}", agent(name), "anthropic", "claude-sonnet-4",
                          {"output_tokens": tokens}, ttl=TTL, max_duration=MAX)  # fmt: skip


def finish(face: Face, name: str, tokens: int, run: str | None = None) -> Any:
    """End a run with what it used: its slot is free, its tokens counted."""
    return face.commit(run or f"run-{name}", {"output_tokens": tokens})


def view(views: Any, budget_id: str) -> Any:
    [found] = [v for v in views if v.budget_id == budget_id]
    return found


def lease_reasons(gov: Governor) -> list[tuple[str, str | None]]:
    return [(e.request_id, e.reason) for e in gov.events(EventQuery(tenant=TENANT))
            if e.status == "released"]  # fmt: skip


#: the day the summary shows: (agent, estimate, used) of finished runs; then three
#: agents running (1000 tokens estimated each)
FINISHED = (
    ("planner", 5_000, 5_000),  # 25 % of its day
    ("coder", 16_500, 16_500),  # 82.5 %
    ("reviewer", 19_250, 19_250),  # 96.25 %
    ("tester", 10_000, 20_500),  # used twice its estimate: 102.5 %
)
STILL_RUNNING = ("a1", "a2", "a3")


def a_day_of_agents(face: Face) -> None:
    for name, estimate, used in FINISHED:
        assert start(face, name, estimate).allowed
        finish(face, name, used)
    for name in STILL_RUNNING:
        assert start(face, name, 1_000).allowed


def summary(face: Face) -> dict[str, tuple[Any, ...]]:
    """System 5's summary: running agents / cap, the day across agents, each agent."""
    running = view(face.status(agent("a1")), "running")
    daily = view(face.status(agent("a1")), "daily")
    out: dict[str, tuple[Any, ...]] = {
        "running": (running.reserved, running.limit, running.percent),
        "daily": (daily.used, daily.reserved, daily.state, daily.percent),
    }
    for name, _, _ in FINISHED:
        mine = view(face.status(agent(name)), "per-agent")
        out[name] = (mine.used, mine.state, mine.percent)
    return out


# --- the library, on every store ----------------------------------------------------------


def test_at_most_ten_agents_run_at_once(gov: Governor, clock: Clock) -> None:
    configure(gov)
    first = clock.now
    for i in range(RUNNING):
        decision = start(gov, f"agent-{i}", 1_000)
        assert decision.allowed
        assert view(decision.budgets, "running").reserved == i + 1  # its own slot included
        clock.advance(seconds=1)
    eleventh = start(gov, "agent-10", 1_000)
    assert eleventh.reason is Reason.CONCURRENCY_LIMITED
    assert [r.budget_id for r in eleventh.refusals] == ["running"]
    # Retry when the soonest run's lease ends (its TTL, unless a heartbeat extends it).
    assert eleventh.retry_at == first + timedelta(seconds=TTL)
    daily = view(gov.status(agent("agent-10")), "daily")
    assert daily.reserved == RUNNING * 1_000  # a refused run reserves no tokens either
    running = view(gov.status(agent("agent-10")), "running")
    assert (running.reserved, running.limit, running.percent) == (10, 10, Decimal("100.00"))
    finish(gov, "agent-3", 800)  # one run ends: its slot is free at once
    assert start(gov, "agent-10", 1_000).allowed
    assert not start(gov, "agent-11", 1_000).allowed


def test_a_task_stops_at_120_minutes(gov: Governor, clock: Clock) -> None:
    configure(gov)
    began = clock.now
    assert start(gov, "coder", 5_000).allowed
    for elapsed in range(BEAT, MAX, BEAT):  # 4, 8, … 116 minutes
        clock.now = began + timedelta(seconds=elapsed)
        beat = gov.heartbeat("run-coder")
        assert (beat.alive, beat.stop, beat.reason) == (True, False, None)
        assert beat.expires_at == min(clock.now + timedelta(seconds=TTL),
                                      began + timedelta(seconds=MAX))  # fmt: skip
        assert beat.max_until == began + timedelta(seconds=MAX)
        assert view(beat.budgets, "per-agent").remaining == PER_AGENT - 5_000
    assert view(gov.status(agent("coder")), "running").reserved == 1  # alive at 116 min
    clock.now = began + timedelta(seconds=MAX)
    beat = gov.heartbeat("run-coder")
    assert (beat.alive, beat.stop, beat.reason) == (False, True, "max_duration")
    assert view(gov.status(agent("coder")), "running").reserved == 0  # the slot is free
    assert lease_reasons(gov) == [("run-coder", "lease_expired")]
    # The agent stops and reports what it used: counted, late; no slot freed twice.
    late = finish(gov, "coder", 6_000)
    assert late.late
    mine = view(gov.status(agent("coder")), "per-agent")
    assert (mine.used, mine.reserved) == (6_000, 0)
    assert view(gov.status(agent("coder")), "running").reserved == 0


def test_a_dead_agent_gives_its_slot_back_after_its_ttl(gov: Governor, clock: Clock) -> None:
    configure(gov)
    began = clock.now
    for i in range(RUNNING):
        assert start(gov, f"agent-{i}", 1_000).allowed
    clock.advance(seconds=BEAT)
    for i in range(1, RUNNING):  # agent-0 died without a word: no heartbeat
        assert gov.heartbeat(f"run-agent-{i}").alive
    refused = start(gov, "agent-10", 1_000)
    assert refused.reason is Reason.CONCURRENCY_LIMITED
    assert refused.retry_at == began + timedelta(seconds=TTL)  # the dead one's TTL
    clock.now = began + timedelta(seconds=TTL)
    assert start(gov, "agent-10", 1_000).allowed  # reclaims the dead agent's slot
    assert lease_reasons(gov) == [("run-agent-0", "lease_expired")]
    assert view(gov.status(agent("agent-10")), "running").reserved == RUNNING
    dead = view(gov.status(agent("agent-0")), "per-agent")
    assert (dead.used, dead.reserved) == (0, 0)  # its token estimate is back too
    beat = gov.heartbeat("run-agent-0")  # the agent wakes up: it must stop
    assert (beat.alive, beat.stop) == (False, True)


def test_hard_limits_refuse_per_agent_then_across_agents(gov: Governor, clock: Clock) -> None:
    configure(gov)
    for run in ("c1", "c2"):
        assert start(gov, "coder", 8_000, run).allowed
        finish(gov, "coder", 8_000, run)
    refused = start(gov, "coder", 8_000, "c3")  # 4000 left of the coder's day
    assert [(r.budget_id, r.reason) for r in refused.refusals] == [
        ("per-agent", Reason.ESTIMATE_EXCEEDS_REMAINING)
    ]
    assert view(gov.status(agent("coder")), "running").reserved == 0  # no slot taken
    for name in ("a1", "a2", "a3"):
        assert start(gov, name, PER_AGENT).allowed
        finish(gov, name, PER_AGENT)
    # 76 000 used of the day across agents: a run of 5000 would cross it.
    refused = start(gov, "a4", 5_000)
    assert [(r.budget_id, r.reason) for r in refused.refusals] == [
        ("daily", Reason.ESTIMATE_EXCEEDS_REMAINING)
    ]
    assert start(gov, "a4", 4_000).allowed
    finish(gov, "a4", 4_000)
    capped = start(gov, "a5", 1)
    assert [(r.budget_id, r.reason) for r in capped.refusals] == [
        ("daily", Reason.HARD_CAP_EXCEEDED)
    ]
    tomorrow = datetime(2026, 11, 24, tzinfo=UTC)
    assert capped.refusals[0].resets_at == tomorrow
    assert capped.retry_at is None  # not a limit that passes within seconds
    clock.now = tomorrow
    assert start(gov, "a5", 1).allowed


def test_soft_limits_let_agents_run_and_say_so(gov: Governor) -> None:
    configure(gov, mode="warn")
    assert start(gov, "coder", 18_000).allowed
    finish(gov, "coder", 18_000)
    over = start(gov, "coder", 5_000, "again")  # 2000 left of the coder's day
    assert over.allowed
    assert [(w.budget_id, w.code) for w in over.warnings] == [
        ("per-agent", "estimate_exceeds_remaining")
    ]
    finish(gov, "coder", 5_000, "again")
    mine = view(gov.status(agent("coder")), "per-agent")
    assert (mine.used, mine.state, mine.percent) == (23_000, State.EXCEEDED, Decimal("115.00"))
    # Soft token limits, hard cap on running agents: the 11th still waits.
    for i in range(RUNNING):
        assert start(gov, f"agent-{i}", 1_000).allowed
    assert start(gov, "agent-10", 1_000).reason is Reason.CONCURRENCY_LIMITED


def test_a_soft_cap_on_running_agents_lets_an_eleventh_run_and_says_so(gov: Governor) -> None:
    configure(gov, running_mode="warn")
    for i in range(RUNNING):
        assert start(gov, f"agent-{i}", 1_000).allowed
    eleventh = start(gov, "agent-10", 1_000)
    assert eleventh.allowed
    assert [(w.budget_id, w.code) for w in eleventh.warnings] == [
        ("running", "concurrency_limited")
    ]
    running = view(eleventh.budgets, "running")
    assert (running.reserved, running.state) == (11, State.EXCEEDED)


def test_the_usage_summary(gov: Governor) -> None:
    configure(gov)
    a_day_of_agents(gov)
    assert summary(gov) == {
        "running": (3, 10, Decimal("30.00")),
        # 61 250 used and 3000 reserved by the running agents: 80.3125 %
        "daily": (61_250, 3_000, State.APPROACHING_LIMIT, Decimal("80.31")),
        "planner": (5_000, State.WITHIN_BUDGET, Decimal("25.00")),
        "coder": (16_500, State.APPROACHING_LIMIT, Decimal("82.50")),
        "reviewer": (19_250, State.AT_LIMIT, Decimal("96.25")),
        "tester": (20_500, State.EXCEEDED, Decimal("102.50")),
    }
    breakdown = {r.group["agent"]: (r.calls, r.totals["output_tokens"])
                 for r in gov.usage(TENANT, by=["agent"])}  # fmt: skip
    assert breakdown == {name: (1, used) for name, _, used in FINISHED}


# --- the HTTP service ---------------------------------------------------------------------


class Service:
    """The app over the test's governor: an admin's client, an orchestrator's (a service
    key) and the raw HTTP answers it gets."""

    def __init__(self, gov: Governor) -> None:
        app = create_app(gov)
        self.admin = self._client(gov, app, "admin")
        self.http = TestClient(app)
        self.orch = self._client(gov, app, "service", TENANT, self.http)

    @staticmethod
    def _client(
        gov: Governor, app: Any, role: str, tenant: str | None = None, http: Any = None
    ) -> Client:
        _, secret = gov.create_key(role, tenant)
        return Client("http://allotment", secret, http=http or TestClient(app))

    def start_raw(self, name: str, tokens: int, run: str | None = None) -> Any:
        """``start`` as raw HTTP: the answer with its status code and headers."""
        body = {"request_id": run or f"run-{name}", "subject": agent(name), "provider": "anthropic",
                "model": "claude-sonnet-4", "estimate": {"output_tokens": tokens},
                "ttl_seconds": TTL, "max_duration_seconds": MAX}  # fmt: skip
        return self.http.post("/v1/authorize", json=body)


def refused_429(answer: Any) -> Mapping[str, Any]:
    assert answer.status_code == 429, answer.text
    error: Mapping[str, Any] = answer.json()["error"]
    assert (error["code"], error["reason"]) == ("concurrency_limited", "concurrency_limited")
    return error


def test_http_an_eleventh_agent_gets_429_until_a_slot_frees(gov: Governor, clock: Clock) -> None:
    service = Service(gov)
    configure(service.admin)
    began = clock.now
    for i in range(RUNNING):
        decision = start(service.orch, f"agent-{i}", 1_000)
        assert decision.allowed
        assert view(decision.budgets, "running").reserved == i + 1
        clock.advance(seconds=1)
    answer = service.start_raw("agent-10", 1_000)
    error = refused_429(answer)
    # Seconds until the soonest lease (agent-0's, 10 s old) reaches its TTL.
    assert answer.headers["Retry-After"] == str(TTL - 10)
    assert error["retry_at"] == (began + timedelta(seconds=TTL)).isoformat()
    assert error["budget_id"] == "running"
    refused = start(service.orch, "agent-10", 1_000)  # the client reads it as a refusal
    assert (refused.allowed, refused.reason) == (False, "concurrency_limited")
    assert refused.retry_at == error["retry_at"]
    clock.now = began + timedelta(seconds=BEAT)
    for i in range(1, RUNNING):  # agent-0 died: no heartbeat
        beat = service.orch.heartbeat(f"run-agent-{i}")
        assert (beat.alive, beat.stop) == (True, False)
        assert beat.expires_at == (clock.now + timedelta(seconds=TTL)).isoformat()
    clock.now = began + timedelta(seconds=TTL - 1)
    assert service.start_raw("agent-10", 1_000).headers["Retry-After"] == "1"
    clock.now = began + timedelta(seconds=TTL)
    assert service.start_raw("agent-10", 1_000).status_code == 200  # the dead one's slot
    assert lease_reasons(gov) == [("run-agent-0", "lease_expired")]
    beat = service.orch.heartbeat("run-agent-0")
    assert (beat.alive, beat.stop, beat.reason) == (False, True, "released")
    running = view(service.orch.status(agent("agent-10")), "running")
    assert (running.reserved, running.limit, running.percent) == (10, 10, "100.00")


def test_http_a_task_stops_at_120_minutes(gov: Governor, clock: Clock) -> None:
    service = Service(gov)
    configure(service.admin)
    began = clock.now
    assert start(service.orch, "coder", 5_000).allowed
    for elapsed in range(BEAT, MAX, BEAT):
        clock.now = began + timedelta(seconds=elapsed)
        beat = service.orch.heartbeat("run-coder")
        assert (beat.alive, beat.stop) == (True, False)
        until = min(clock.now + timedelta(seconds=TTL), began + timedelta(seconds=MAX))
        assert beat.expires_at == until.isoformat()
        assert view(beat.budgets, "per-agent").remaining == PER_AGENT - 5_000
    clock.now = began + timedelta(seconds=MAX)
    beat = service.orch.heartbeat("run-coder")
    assert (beat.alive, beat.stop, beat.reason) == (False, True, "max_duration")
    assert beat.max_until == (began + timedelta(seconds=MAX)).isoformat()
    assert view(service.orch.status(agent("coder")), "running").reserved == 0
    assert service.orch.commit("run-coder", {"output_tokens": 6_000}).late


@pytest.mark.parametrize("mode", ["enforce", "warn"])
def test_http_hard_or_soft_token_limits(gov: Governor, mode: str) -> None:
    service = Service(gov)
    configure(service.admin, mode=mode)
    assert start(service.orch, "coder", 18_000).allowed
    finish(service.orch, "coder", 18_000)
    answer = service.start_raw("coder", 5_000, "again")
    if mode == "enforce":  # a budget over, not a limit that passes soon: 402
        assert answer.status_code == 402, answer.text
        assert answer.json()["error"]["reason"] == "estimate_exceeds_remaining"
        assert "Retry-After" not in answer.headers
    else:
        assert answer.status_code == 200, answer.text
        assert [w["code"] for w in answer.json()["warnings"]] == ["estimate_exceeds_remaining"]


def test_http_the_usage_summary(gov: Governor) -> None:
    service = Service(gov)
    configure(service.admin)
    a_day_of_agents(service.orch)
    assert summary(service.orch) == {
        "running": (3, 10, "30.00"),
        "daily": (61_250, 3_000, "approaching_limit", "80.31"),
        "planner": (5_000, "within_budget", "25.00"),
        "coder": (16_500, "approaching_limit", "82.50"),
        "reviewer": (19_250, "at_limit", "96.25"),
        "tester": (20_500, "exceeded", "102.50"),
    }
    rows = service.admin.usage(TENANT, by=["agent"])
    assert {r.group.agent: (r.calls, r.totals["output_tokens"]) for r in rows} == {
        name: (1, used) for name, _, used in FINISHED
    }
