"""User systems 1 to 5 through the HTTP service, as they pass through the library.

The Python client talks to the real app in-process; the governor behind it
runs on the test's clock and store (both backends).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app, schemas
from allotment.client import Client, RemoteCommitResult
from allotment.core.topups import USER_MESSAGES, TopUpStatus
from allotment.governor import Governor
from allotment.payments import TestGateway
from allotment.pricing import ModelRate, StaticPricer
from allotment.store.base import EventQuery
from tests.conftest import Clock
from tests.scenarios.test_system3_credits import SUBSCRIPTION, customer
from tests.scenarios.test_system4_tiers import HOSTED as HOSTED_ROUTE
from tests.scenarios.test_system4_tiers import OWN as OWN_ROUTE
from tests.scenarios.test_system4_tiers import SUBCAPPED as SUBCAPPED_CORE
from tests.scenarios.test_system4_tiers import TIERS


def remote(gov: Governor, role: str = "admin", tenant: str | None = None) -> Client:
    _, secret = gov.create_key(role, tenant)
    return Client("http://allotment", secret, http=TestClient(create_app(gov)))


def test_system1_crm_token_budgets(gov: Governor, clock: Clock) -> None:
    admin = remote(gov)
    admin.create_budget({"id": "port-a-day", "tenant": "port-a", "meter": "tokens",
                         "window": "day", "limit": 10_000})  # fmt: skip
    port = remote(gov, "service", "port-a")
    subject = {"tenant": "port-a", "user": "u1", "feature": "summarize"}
    assert port.authorize("1", subject, "openai", "gpt-4o-mini", {"output_tokens": 1000}).allowed
    port.commit("1", {"input_tokens": 6000, "output_tokens": 1500})
    banner = port.authorize("2", subject, "openai", "gpt-4o-mini", {"output_tokens": 1000})
    assert [w.code for w in banner.warnings] == ["soft_threshold"]
    port.commit("2", {"input_tokens": 1000, "output_tokens": 500})
    too_big = port.authorize("3", subject, "openai", "gpt-4o-mini", {"output_tokens": 1001})
    assert too_big.refusals[0].reason == "estimate_exceeds_remaining"
    port.record("4", subject, "openai", "gpt-4o-mini", {"input_tokens": 1000})
    capped = port.authorize("5", subject, "openai", "gpt-4o-mini", {"output_tokens": 1})
    assert capped.refusals[0].reason == "hard_cap_exceeded"
    assert capped.refusals[0].resets_at == "2026-11-24T00:00:00+00:00"
    clock.now = datetime(2026, 11, 24, tzinfo=UTC)
    assert port.authorize("6", subject, "openai", "gpt-4o-mini", {"output_tokens": 1}).allowed
    viewer = remote(gov, "viewer", "port-a")
    rows = viewer.usage("port-a", by=["feature"], since="2026-11-23T00:00:00Z")
    assert [(r.group.feature, r.calls) for r in rows] == [("summarize", 3)]


def test_system2_gateway_cost_policies(make_governor: Callable[..., Governor]) -> None:
    rates = {"claude-3-5-haiku": ModelRate(input=Decimal("0.80"), output=Decimal("4.00"))}
    gov: Governor = make_governor(currency="EUR", pricer=StaticPricer(rates, "EUR"))
    admin = remote(gov)
    common = {"tenant": "globex", "meter": "cost", "per": "user", "window": "day",
              "currency": "EUR", "exclude": {"tags.byok": "true"}}  # fmt: skip
    admin.create_budget(common | {"id": "org", "limit": "1.00"})
    admin.create_budget(common | {"id": "interns", "limit": "0.20", "match": {"group": "interns"}})
    admin.create_budget(common | {"id": "alice", "limit": "3.00", "match": {"user": "alice"},
                                  "overrides": True})  # fmt: skip
    gw = remote(gov, "service", "globex")
    call = {"input_tokens": 1000, "output_tokens": 100_000}  # 0.4008 EUR
    ivan = {"tenant": "globex", "user": "ivan", "groups": ["interns"]}
    assert gw.authorize("i1", ivan, "anthropic", "claude-3-5-haiku", call).refusals[
        0
    ].budget_id == ("interns")
    alice = {"tenant": "globex", "user": "alice", "groups": ["interns"]}
    for i in range(5):
        assert gw.authorize(f"a{i}", alice, "anthropic", "claude-3-5-haiku", call).allowed
        gw.commit(f"a{i}", call)
    assert [v.budget_id for v in gw.status(alice)] == ["alice"]
    byok = {"tenant": "globex", "user": "bob", "tags": {"byok": "true"}}
    assert gw.authorize("b1", byok, "anthropic", "claude-3-5-haiku", call).budgets == []


@pytest.mark.parametrize("mode", ["enforce", "warn"])
def test_system5_agent_orchestrator(gov: Governor, mode: str) -> None:
    admin = remote(gov)
    admin.create_budget({"id": "all", "tenant": "orch", "meter": "tokens", "window": "day",
                         "limit": 10_000})  # fmt: skip
    admin.create_budget({"id": "agent", "tenant": "orch", "meter": "tokens", "window": "day",
                         "limit": 4_000, "per": "agent", "mode": mode})  # fmt: skip
    orch = remote(gov, "service", "orch")
    for agent, tokens in (("planner", 1000), ("coder", 3300), ("reviewer", 3850)):
        subject = {"tenant": "orch", "agent": agent}
        orch.authorize(agent, subject, "anthropic", "claude", {"output_tokens": tokens})
        orch.commit(agent, {"output_tokens": tokens})
    states = {
        a: next(v for v in orch.status({"tenant": "orch", "agent": a}) if v.budget_id == "agent")
        for a in ("planner", "coder", "reviewer")
    }
    assert {a: (v.state, v.percent) for a, v in states.items()} == {
        "planner": ("within_budget", "25.00"),
        "coder": ("approaching_limit", "82.50"),
        "reviewer": ("at_limit", "96.25"),
    }
    again = orch.authorize("again", {"tenant": "orch", "agent": "reviewer"}, "anthropic",
                           "claude", {"output_tokens": 200})  # fmt: skip
    assert again.allowed is (mode == "warn")


class Desk:
    """System 3's service: the desktop app's calls (a service key), what the app shows
    (a viewer key's client view), the operator (an admin key), and the raw answers."""

    def __init__(self, gov: Governor, clock: Clock) -> None:
        self.gov, self.clock = gov, clock
        self.app = create_app(gov)
        self.admin, _ = self.client("admin")
        self.service, self.http = self.client("service", "desk")
        _, self.viewer = self.client("viewer", "desk")

    def client(self, role: str, tenant: str | None = None) -> tuple[Client, TestClient]:
        _, secret = self.gov.create_key(role, tenant)
        http = TestClient(self.app)
        return Client("http://allotment", secret, http=http), http

    def call(self, request_id: str, user: str, dollars: str) -> Any:
        """A call estimated and used at ``dollars``: the 402's error if refused, else the
        commit. Each a second after the last, so the latest top-up is the last started."""
        self.clock.advance(seconds=1)
        body = {"request_id": request_id, "subject": customer(user), "provider": "openai",
                "model": "gpt-4o-mini", "estimate": {"cost": dollars}}  # fmt: skip
        answer = self.http.post("/v1/authorize", json=body)
        if answer.status_code == 402:
            schemas.RefusalBody.model_validate(answer.json())
            return answer.json()["error"]
        assert answer.status_code == 200, answer.text
        return self.service.commit(request_id, {"cost": dollars, "output_tokens": 10})

    def client_view(self, user: str) -> dict[str, Any]:
        """What the desktop app shows (``GET /v1/status?view=client``)."""
        answer = self.viewer.get("/v1/status", params=customer(user) | {"view": "client"})
        schemas.StatusOut.model_validate(answer.json())
        [view] = answer.json()["budgets"]
        return dict(view)

    def latest(self, user: str) -> Any:
        return self.admin.topup_status("sub", tenant="desk", member=user)


def test_system3_credits_and_auto_topup(
    make_governor: Callable[..., Governor], clock: Clock
) -> None:
    gateway = TestGateway()
    desk = Desk(make_governor(gateway=gateway, topup_worker=False), clock)
    desk.admin.create_budget(SUBSCRIPTION)
    top_up_to_the_monthly_cap(desk, gateway)
    a_failed_payment_pauses_auto_topup(desk, gateway)
    provider_errors_are_error_events_with_zero_usage(desk)


def top_up_to_the_monthly_cap(desk: Desk, gateway: TestGateway) -> None:
    desk.admin.add_grant("sub", "10.00", tenant="desk", member="cust-1",
                         idempotency_key="stripe_pi_1")  # fmt: skip
    for i in range(3):
        desk.call(f"p{i}", "cust-1", "6.00")  # 18 of the 20 dollars of the period
    shown = desk.client_view("cust-1")  # percent only
    assert (shown["percent_available"], shown["warning"]) == ("10.00", True)
    assert shown["extra_credit"] == {"active": False, "auto_topup": None}
    assert not {"used", "limit", "remaining", "credit", "display"} & set(shown)
    desk.call("x1", "cust-1", "6.00")  # 2 from the period, 4 of extra credit
    assert desk.gov.run_topups() == [] and desk.latest("cust-1") == (None, None)
    assert desk.client_view("cust-1")["extra_credit"]["active"] is True
    started = desk.call("x2", "cust-1", "2.00")  # 4 left: one top-up starts
    status, pending = desk.latest("cust-1")
    assert status is None and pending is not None and pending.state == "pending"
    assert started.topups == (pending.id,)  # the commit's answer names it
    [paid] = desk.gov.run_topups()
    assert (paid.id, paid.amount, gateway.requests[0].amount) == (pending.id, 10_000_000, 10)
    desk.call("x3", "cust-1", "10.00")  # 4 left again: the second top-up, 20 of the cap of 20
    assert len(desk.gov.run_topups()) == 1
    desk.call("x4", "cust-1", "10.00")  # 4 left: a third would pass the monthly cap
    assert desk.gov.run_topups() == [] and len(gateway.paid) == 2
    pool = desk.admin.pool("sub", tenant="desk", member="cust-1")
    assert pool.auto_topup is not None
    assert (pool.auto_topup["status"], pool.auto_topup["latest"]["state"]) == (
        "auto_topup_monthly_limit_reached", "succeeded")  # fmt: skip
    refused = desk.call("x5", "cust-1", "5.00")
    assert (refused["code"], refused["pool"], refused["reason"]) == (
        "auto_topup_monthly_limit_reached", "sub", "credits_exhausted")  # fmt: skip
    assert refused["message"] == USER_MESSAGES[TopUpStatus.MONTHLY_LIMIT_REACHED]
    assert refused["message"].startswith("You have reached this month's automatic top-up limit")
    assert desk.client_view("cust-1")["extra_credit"]["auto_topup"] == {
        "status": "auto_topup_monthly_limit_reached", "message": refused["message"]}  # fmt: skip
    [operator] = desk.admin.status(customer("cust-1"))  # the operator sees amounts
    assert (operator.used, operator.limit) == (20_000_000, 20_000_000)
    assert operator.credit is not None
    assert (operator.credit["available"], operator.credit["debt"]) == (4_000_000, 0)
    assert operator.credit["display"]["available"] == "4.00"
    blocked = desk.admin.events(EventQuery(tenant="desk", status="blocked"))  # type: ignore[arg-type]
    assert [(e.reason, e.usage.cost_micros) for e in blocked] == [("credits_exhausted", 0)]


def a_failed_payment_pauses_auto_topup(desk: Desk, gateway: TestGateway) -> None:
    gateway.outcome = "failed"
    desk.admin.add_grant("sub", "8.00", tenant="desk", member="cust-2")
    desk.call("p", "cust-2", "20.00")  # the period's allowance is gone
    desk.call("x", "cust-2", "4.00")  # 4 left: below 5, a top-up starts
    [failed] = desk.gov.run_topups()
    assert failed.state.value == "failed"
    refused = desk.call("y", "cust-2", "5.00")
    assert (refused["code"], refused["pool"]) == ("auto_topup_failed", "sub")
    assert refused["message"] == USER_MESSAGES[TopUpStatus.FAILED]
    assert "payment" in refused["message"]
    assert desk.client_view("cust-2")["extra_credit"]["auto_topup"]["status"] == (
        "auto_topup_failed")  # fmt: skip
    desk.call("z", "cust-2", "1.00")  # paused: no second attempt
    assert desk.gov.run_topups() == []
    assert desk.latest("cust-2")[1].state == "failed"
    assert desk.admin.resume_topups("sub", tenant="desk", member="cust-2") is True
    gateway.outcome = "succeeded"
    desk.call("w", "cust-2", "1.00")  # still low: a new top-up, paid
    [paid] = desk.gov.run_topups()
    assert paid.state.value == "succeeded" and desk.latest("cust-2")[1].id == paid.id


def provider_errors_are_error_events_with_zero_usage(desk: Desk) -> None:
    granted = desk.service.authorize("e", customer("cust-3"), "openai", "gpt-4o-mini",
                                     {"cost": "1.00"})  # fmt: skip
    assert granted.allowed
    result = desk.service.commit("e", {"cost": "0"}, status="error", reason="upstream 503")
    assert isinstance(result, RemoteCommitResult)
    assert (result.event.status, result.event.usage.cost_micros) == ("error", 0)
    assert desk.admin.status(customer("cust-3"))[0].used == 0
    errors = desk.admin.events(EventQuery(tenant="desk", status="error"))  # type: ignore[arg-type]
    assert [(e.request_id, e.reason, e.usage.cost_micros) for e in errors] == [
        ("e", "upstream 503", 0)]  # fmt: skip


#: one call of system 4's app: one credit
TIER_CALL = {"credits": 1}


class Relay:
    """System 4's service: the app's calls (a service key), the operator (an admin key
    through ``Client``, and its raw HTTP), and what the app reads (a viewer key)."""

    def __init__(self, gov: Governor) -> None:
        app = create_app(gov)
        _, admin = gov.create_key("admin")
        self.http = TestClient(app, headers={"Authorization": f"Bearer {admin}"})
        self.admin = Client("http://allotment", admin, http=TestClient(app))
        self.service = remote(gov, "service", "relay")
        _, viewer = gov.create_key("viewer", "relay")
        self.viewer = TestClient(app, headers={"Authorization": f"Bearer {viewer}"})

    def calls(self, n: int, prefix: str, install: str) -> int:
        """Plan, call, then commit on success (system 4's flow), ``n`` times; how many ran."""
        ran = 0
        for i in range(n):
            subject = {"tenant": "relay", "install": install}
            decision = self.service.authorize(f"{prefix}-{i}", subject, "hosted", "relay-model",
                                              TIER_CALL)  # fmt: skip
            if decision.allowed:
                self.service.commit(f"{prefix}-{i}", TIER_CALL)
                ran += 1
        return ran

    def standing(self, install: str) -> tuple[str, int, int | None]:
        """The install's one plan budget, as ``GET /v1/status`` answers it."""
        answer = self.viewer.get("/v1/status", params={"tenant": "relay", "install": install})
        schemas.StatusOut.model_validate(answer.json())
        [view] = answer.json()["budgets"]
        return view["budget_id"], view["used"], view["remaining"]

    def assign(self, install: str, plan: str) -> dict[str, Any]:
        body = {"tenant": "relay", "member": install, "plan": plan}
        answer = self.http.put("/v1/plans/assignments", json=body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def test_system4_tiers(gov: Governor, clock: Clock) -> None:
    clock.now = datetime(2026, 11, 10, 12, tzinfo=UTC)
    relay = Relay(gov)
    for spec in TIERS:
        saved = relay.http.put(f"/v1/plans/{spec['id']}", json=spec)
        assert saved.status_code == 200 and saved.json()["version"] == 1, saved.text
    assert [p.id for p in relay.admin.list_plans("relay")] == ["core", "max", "pro"]
    a_tier_change_mid_month_and_months_that_roll_over_lazily(relay, clock)
    core_is_a_lifetime_quota_that_never_resets(relay, clock)


def a_tier_change_mid_month_and_months_that_roll_over_lazily(relay: Relay, clock: Clock) -> None:
    assert relay.calls(30, "core", "i-1") == 30
    assignment = relay.assign("i-1", "pro")  # takes effect on the next request
    assert (assignment["plan"], assignment["epoch"], assignment["usage"]) == ("pro", 0, "carry")
    assert relay.standing("i-1") == ("pro.credits", 0, 1000)
    assert relay.calls(1001, "pro", "i-1") == 1000
    assert relay.standing("i-1") == ("pro.credits", 1000, 0)
    clock.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)  # no job ran: the month rolled
    assert relay.standing("i-1") == ("pro.credits", 0, 1000)
    relay.assign("i-1", "max")
    assert relay.calls(5, "max", "i-1") == 5
    assert relay.standing("i-1") == ("max.credits", 5, None)  # unlimited: remaining null
    relay.assign("i-1", "core")  # back to core: its lifetime quota survived
    assert relay.standing("i-1") == ("core.credits", 30, 70)
    assert relay.admin.plan_of("relay", "i-1") is not None
    plans: list[str | None] = []
    query = EventQuery(tenant="relay", limit=1000)
    while page := relay.admin.events(query):
        plans += [e.subject.tag("plan") for e in page if e.subject.install == "i-1"]
        query = EventQuery(tenant="relay", limit=1000, after_id=page[-1].id or 0)
    assert {p: plans.count(p) for p in set(plans)} == {"core": 30, "pro": 1001, "max": 5}


def core_is_a_lifetime_quota_that_never_resets(relay: Relay, clock: Clock) -> None:
    assert relay.calls(101, "a", "i-2") == 100  # i-2 has no assignment: the default, core
    subject = {"tenant": "relay", "install": "i-2"}
    refused = relay.service.authorize("b", subject, "hosted", "relay-model", TIER_CALL)
    assert refused.refusals[0].reason == "hard_cap_exceeded"
    assert refused.refusals[0].budget_id == "core.credits"
    clock.now = datetime(2027, 3, 1, tzinfo=UTC)  # months later: still spent
    assert relay.standing("i-2") == ("core.credits", 100, 0)
    assert relay.admin.plan_of("relay", "i-2") is None


def routed(relay: Relay, request_id: str, install: str, routes: list[dict[str, str]]) -> Any:
    """Plan (authorize over the routes), call, then commit one credit on success."""
    subject = {"tenant": "relay", "install": install}
    decision = relay.service.authorize(request_id, subject, "hosted", "relay-model", TIER_CALL,
                                       routes=routes)  # fmt: skip
    if decision.allowed:
        relay.service.commit(request_id, TIER_CALL)
    return decision


def on_hosted(relay: Relay, install: str) -> dict[str, tuple[int, int]]:
    """(used, reserved) of each budget a hosted call of ``install`` counts on."""
    params = {"tenant": "relay", "install": install, "tag": "backend:hosted"}
    answer = relay.viewer.get("/v1/status", params=params)
    schemas.StatusOut.model_validate(answer.json())
    return {v["budget_id"]: (v["used"], v["reserved"]) for v in answer.json()["budgets"]}


def test_system4_routes_and_sub_caps(gov: Governor, clock: Clock) -> None:
    clock.now = datetime(2026, 11, 10, 12, tzinfo=UTC)
    relay = Relay(gov)
    saved = relay.http.put("/v1/plans/core", json=SUBCAPPED_CORE)
    assert saved.status_code == 200 and saved.json()["version"] == 1, saved.text
    hosted = saved.json()["budgets"][1]
    assert (hosted["id"], hosted["share"], hosted["match"]) == (
        "hosted", "0.5", {"tags.backend": ["hosted"]})  # fmt: skip
    the_51st_call_falls_back_to_own_hardware(relay)
    without_hardware_the_51st_call_is_refused_naming_the_sub_cap(relay, gov)
    planning_does_not_debit_and_a_failed_call_debits_nothing(relay)


def the_51st_call_falls_back_to_own_hardware(relay: Relay) -> None:
    served = [routed(relay, f"h-{i}", "i-1", [HOSTED_ROUTE, OWN_ROUTE]) for i in range(51)]
    assert all(d.allowed for d in served)
    assert [d.route for d in served] == [HOSTED_ROUTE] * 50 + [OWN_ROUTE]
    assert all(d.skipped == [] for d in served[:50])
    [skipped] = served[50].skipped
    assert (skipped["backend"], skipped["reason"], skipped["budget_id"]) == (
        "hosted", "hard_cap_exceeded", "core.hosted")  # fmt: skip
    assert relay.standing("i-1") == ("core.credits", 51, 49)
    assert on_hosted(relay, "i-1") == {"core.credits": (51, 0), "core.hosted": (50, 0)}
    query = EventQuery(tenant="relay", limit=1000)
    tags = {e.request_id: dict(e.subject.tags) for e in relay.admin.events(query)}
    assert tags["h-0"] == {"backend": "hosted", "plan": "core"}
    assert tags["h-50"] == {"backend": "own", "plan": "core",
                            "requested_route": "hosted/relay-model@hosted"}  # fmt: skip


def without_hardware_the_51st_call_is_refused_naming_the_sub_cap(
    relay: Relay, gov: Governor
) -> None:
    assert all(routed(relay, f"o-{i}", "i-2", [HOSTED_ROUTE]).allowed for i in range(50))
    _, secret = gov.create_key("service", "relay")
    app = TestClient(create_app(gov), headers={"Authorization": f"Bearer {secret}"})
    answer = app.post("/v1/authorize", json={
        "request_id": "o-50", "subject": {"tenant": "relay", "install": "i-2"},
        "provider": "hosted", "model": "relay-model", "estimate": TIER_CALL,
        "routes": [HOSTED_ROUTE]})  # fmt: skip
    assert answer.status_code == 402, answer.text
    schemas.ErrorBody.model_validate(answer.json())  # RefusalBody lacks ``routes`` (a bug)
    error = answer.json()["error"]
    decision = schemas.DecisionOut.model_validate(error["decision"])
    assert (error["code"], error["budget_id"], error["reason"]) == (
        "budget_exceeded", "core.hosted", "hard_cap_exceeded")  # fmt: skip
    assert (error["remaining"], error["limit"], error["unit"]) == (0, 50, "credits")
    assert error["message"] == (
        "No route can take this request (hosted/relay-model@hosted: hard_cap_exceeded)."
    )
    assert [(r["backend"], r["budget_id"]) for r in error["routes"]] == [("hosted", "core.hosted")]
    assert [r.budget_id for r in decision.refusals] == ["core.hosted"]
    assert "Retry-After" not in answer.headers  # a lifetime quota: waiting cannot help
    assert relay.standing("i-2") == ("core.credits", 50, 50)  # the plan's own quota is not spent


def planning_does_not_debit_and_a_failed_call_debits_nothing(relay: Relay) -> None:
    subject = {"tenant": "relay", "install": "i-3"}
    held = relay.service.authorize("ok", subject, "hosted", "relay-model", TIER_CALL,
                                   routes=[HOSTED_ROUTE, OWN_ROUTE])  # fmt: skip
    assert held.route == HOSTED_ROUTE
    assert {v.budget_id: (v.used, v.reserved) for v in held.budgets} == {
        "core.credits": (0, 1), "core.hosted": (0, 1)}  # fmt: skip
    assert on_hosted(relay, "i-3") == {"core.credits": (0, 1), "core.hosted": (0, 1)}
    relay.service.commit("ok", TIER_CALL)  # the call succeeded: now it is debited
    assert on_hosted(relay, "i-3") == {"core.credits": (1, 0), "core.hosted": (1, 0)}
    failing = relay.service.authorize("failed", subject, "hosted", "relay-model", TIER_CALL,
                                      routes=[HOSTED_ROUTE, OWN_ROUTE])  # fmt: skip
    assert failing.route == HOSTED_ROUTE
    assert on_hosted(relay, "i-3") == {"core.credits": (1, 1), "core.hosted": (1, 1)}
    result = relay.service.commit("failed", {"credits": 0}, status="error", reason="upstream 500")
    assert (result.event.status, result.event.usage.credits) == ("error", 0)
    assert on_hosted(relay, "i-3") == {"core.credits": (1, 0), "core.hosted": (1, 0)}
    errors = relay.admin.events(EventQuery(tenant="relay", status="error"))  # type: ignore[arg-type]
    failed = [(e.request_id, e.reason, e.usage.credits, e.subject.tag("backend")) for e in errors]
    assert failed == [("failed", "upstream 500", 0, "hosted")]
