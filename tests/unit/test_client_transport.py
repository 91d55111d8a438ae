"""``Client`` / ``AsyncClient`` over ``httpx.MockTransport``: retries, errors, typed answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from allotment import BudgetExceeded, StoreError
from allotment.client import (
    AsyncClient,
    Client,
    RemoteBudgetView,
    RemoteCommitResult,
    RemoteDecision,
)
from allotment.core.ledger import ReservationState
from allotment.core.usage import Usage

SUBJECT = {"tenant": "acme", "user": "u1"}
VIEW = {"budget_id": "d", "name": None, "meter": "tokens", "percent": "40.00",
        "percent_available": "60.00", "state": "within_budget",
        "resets_at": "2026-11-24T00:00:00+00:00", "member": "", "mode": "enforce",
        "enabled": True, "used": 0, "reserved": 400, "limit": 1000, "remaining": 600,
        "overshoot": 0, "unit": "tokens", "currency": None,
        "window_start": "2026-11-23T00:00:00+00:00"}  # fmt: skip
DECISION = {"request_id": "r1", "allowed": True, "reason": None, "refusals": [], "warnings": [],
            "shadow_refusals": [], "budgets": [VIEW], "expires_at": "2026-11-23T00:05:00+00:00",
            "retry_at": None, "replayed": False, "degraded": False,
            "commit_with": None, "route": None, "skipped": []}  # fmt: skip
EVENT = {"id": 7, "request_id": "r1", "status": "success", "subject": SUBJECT,
         "provider": "openai", "model": "gpt-4o-mini",
         "usage": Usage(input_tokens=100, output_tokens=500, cost_micros=315).to_dict(),
         "estimate": None, "currency": "USD", "price": {"source": "catalog"}, "reason": None,
         "budget_id": None, "occurred_at": "2026-11-23T00:00:00+00:00",
         "recorded_at": "2026-11-23T00:00:01+00:00"}  # fmt: skip
COMMITTED = {"event": EVENT, "replayed": False, "late": False, "late_overshoot": [], "topups": [],
             "adjustments": [{"budget_id": "d", "member": "", "estimated": 400, "actual": 600,
                              "difference": -200, "unit": "tokens", "currency": None}]}  # fmt: skip
REFUSAL = {"budget_id": "d", "reason": "estimate_exceeds_remaining", "requested": 700,
           "remaining": 600, "limit": 1000, "unit": "tokens", "currency": None,
           "resets_at": "2026-11-24T00:00:00+00:00",
           "display": {"requested": "700", "remaining": "600", "limit": "1000"}}  # fmt: skip
REFUSED = {"error": {"code": "budget_exceeded", "message": "no", "decision": DECISION | {
    "allowed": False, "reason": "estimate_exceeds_remaining", "budgets": [],
    "refusals": [REFUSAL]}}}  # fmt: skip
UNAVAILABLE = httpx.Response(503, json={"error": {"code": "store_unavailable", "message": "down"}})


class Script:
    """A mock service answering each request with the next of ``answers``, and noting it."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer.status_code, content=answer.content)  # a fresh stream

    def body(self, n: int = -1) -> Any:
        return json.loads(self.seen[n].content)


def client(script: Script, retries: int = 3) -> Client:
    transport = httpx.MockTransport(script)
    return Client("http://svc", "ak_key", retries=retries, backoff=(0,), transport=transport)


def ok(data: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=data)


# --- typed answers -----------------------------------------------------------------------


def test_answers_are_typed_and_read_like_the_governors() -> None:
    script = Script(ok(DECISION), ok(COMMITTED), httpx.Response(402, json=REFUSED))
    with client(script) as remote:
        decision = remote.authorize("r1", SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 400})
        assert isinstance(decision, RemoteDecision) and decision.allowed
        [view] = decision.budgets
        assert isinstance(view, RemoteBudgetView)
        assert (view.remaining, view.reserved, view.state, view.percent) == (
            600, 400, "within_budget", "40.00")  # fmt: skip
        result = remote.commit("r1", {"output_tokens": 600})
        assert isinstance(result, RemoteCommitResult)
        assert result.event.usage.output_tokens == 500 and result.event.subject.user == "u1"
        [over] = result.overshoot  # as the README says: used more than reserved
        assert (over.budget_id, over.difference) == ("d", -200)
        refused = remote.authorize("r2", SUBJECT, "openai", "m", {"output_tokens": 700})
        assert not refused.allowed and refused.refusals[0].reason == "estimate_exceeds_remaining"
        assert refused.refusals[0].remaining == 600 and refused.reason == refused.refusals[0].reason
        assert (refused.refusals[0].unit, refused.refusals[0].display) == (
            "tokens", REFUSAL["display"])  # fmt: skip
    assert (view.unit, view.display, getattr(over, "unit", None)) == ("tokens", None, "tokens")
    assert decision.to_dict() == DECISION and result.to_dict() == COMMITTED


def test_a_refused_hold_raises_budget_exceeded() -> None:
    with client(Script(httpx.Response(402, json=REFUSED))) as remote:
        with pytest.raises(BudgetExceeded) as info:
            remote.hold(SUBJECT, "openai", "m", {"output_tokens": 700})
    assert (info.value.budget_id, info.value.remaining) == ("d", 600)


def test_a_degraded_grants_commit_carries_what_it_needs() -> None:
    commit_with = {"subject": SUBJECT, "provider": "openai", "model": "gpt-4o"}
    degraded = DECISION | {"degraded": True, "budgets": [], "commit_with": commit_with}
    script = Script(ok(degraded), ok(COMMITTED))
    with client(script) as remote:
        assert remote.authorize("r1", SUBJECT, "openai", "gpt-4o").degraded
        remote.commit("r1", {"input_tokens": 5})
    assert script.body() == {"request_id": "r1", "usage": {"input_tokens": 5},
                             "status": "success", **commit_with}  # fmt: skip


# --- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        (lambda c: c.authorize("r1", SUBJECT, "openai", "m", {"output_tokens": 1}), DECISION),
        (lambda c: c.commit("r1", {"output_tokens": 1}), COMMITTED),
        (lambda c: c.status(SUBJECT), {"budgets": [VIEW]}),
        (lambda c: c.list_budgets(), {"budgets": []}),
    ],
)
def test_idempotent_calls_are_retried(call: Callable[[Client], Any], answer: object) -> None:
    script = Script(UNAVAILABLE, httpx.ConnectError("refused"), ok(answer))
    with client(script) as remote:
        call(remote)
    assert len(script.seen) == 3


def test_release_and_record_are_retried_too() -> None:
    script = Script(UNAVAILABLE, ok({"request_id": "r1", "state": "released"}))
    with client(script) as remote:
        assert remote.release("r1") is ReservationState.RELEASED
    script = Script(httpx.ReadTimeout("slow"), ok({"events": [COMMITTED]}))
    with client(script) as remote:
        assert remote.record("r1", SUBJECT, "openai", "m", {"input_tokens": 1}).event.id == 7
    assert script.body(0) == script.body(1)  # the same request id: counted once


def test_an_unreachable_service_is_a_store_error_after_the_retries() -> None:
    script = Script(httpx.ConnectError("refused"))
    with client(script, retries=2) as remote, pytest.raises(StoreError) as info:
        remote.status(SUBJECT)
    assert len(script.seen) == 3
    assert str(info.value).startswith("cannot reach the service at http://svc")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    with client(Script(httpx.ConnectTimeout("slow")), retries=0) as remote:
        with pytest.raises(StoreError, match="timed out"):
            remote.usage("acme")


def test_a_503_that_lasts_is_a_store_error() -> None:
    script = Script(UNAVAILABLE)
    with client(script, retries=1) as remote, pytest.raises(StoreError, match="down"):
        remote.commit("r1", {})
    assert len(script.seen) == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create_key("service", "acme"),
        lambda c: c.create_budget({"id": "b", "meter": "tokens", "window": "day"}),
        lambda c: c.delete_budget("b"),
        lambda c: c.revoke_key("k"),
    ],
)
def test_changes_are_sent_once(call: Callable[[Client], Any]) -> None:
    script = Script(UNAVAILABLE)
    with client(script) as remote, pytest.raises(StoreError):
        call(remote)
    assert len(script.seen) == 1


def test_set_budget_replaces_an_existing_budget_wholesale() -> None:
    spec = {"id": "b", "tenant": "acme", "meter": "tokens", "window": "day", "limit": "10"}
    taken = httpx.Response(409, json={"error": {"code": "conflict", "message": "taken"}})
    script = Script(taken, ok(spec | {"mode": "enforce"}))
    with client(script) as remote:
        assert remote.set_budget(spec).limit == "10"
    assert [r.method for r in script.seen] == ["POST", "PATCH"]
    patch = script.body()
    assert patch["limit"] == "10" and patch["mode"] == "enforce" and patch["soft"] == ["80"]
    assert patch["match"] == {} and patch["per"] is None  # every field: a replacement


def test_async_client_retries_and_holds() -> None:
    script = Script(UNAVAILABLE, ok(DECISION), ok(COMMITTED), ok(DECISION),
                    ok({"request_id": "r1", "state": "released"}))  # fmt: skip

    async def main() -> None:
        transport = httpx.MockTransport(script)
        async with AsyncClient("http://svc", "k", backoff=(0,), transport=transport) as remote:
            async with remote.hold(SUBJECT, "openai", "m", {"output_tokens": 400}) as h:
                assert h.decision.budgets[0].remaining == 600
                assert (await h.commit({"output_tokens": 600})).overshoot[0].difference == -200
            with pytest.raises(RuntimeError):
                async with remote.hold(SUBJECT, "openai", "m", request={"messages": []}):
                    raise RuntimeError("provider failed")

    asyncio.run(main())
    assert [r.url.path for r in script.seen] == [
        "/v1/authorize", "/v1/authorize", "/v1/commit", "/v1/authorize", "/v1/release",
    ]  # fmt: skip
    assert script.body(1)["subject"] == SUBJECT and script.body(3)["request"] == {"messages": []}
    assert script.body(2)["tenant"] == "acme" and script.body(4)["reason"] == "exception"
