"""Rate limits and leases over HTTP (issue 19), on every backend, with a hand-moved clock.

A full rolling window or concurrency budget is a 429 whose ``Retry-After`` is
the exact wait, rounded up to whole seconds; any other refusal stays a 402 with
no ``Retry-After``, a call larger than the limit itself included
(``estimate_exceeds_limit``). Every authorize answer names its binding budget
in the IETF draft headers ``RateLimit-Policy`` and ``RateLimit``. Leases are
kept alive by ``POST /v1/leases/{id}/heartbeat`` up to their maximum duration,
and only by a key that may write usage for the lease's tenant. The Python
clients read all of it.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from allotment._answers import RemoteHeartbeat  # not (yet) in allotment.client.__all__
from allotment.api import create_app, schemas
from allotment.client import AsyncClient, Client, RemoteDecision
from allotment.errors import AccessDenied, NotFoundError, ValidationError
from allotment.governor import Governor
from tests.api.test_api import Api
from tests.conftest import Clock

ACME = {"tenant": "acme", "user": "u1", "agent": "a1"}
RPM = {"id": "rpm", "tenant": "acme", "meter": "requests", "window": "rolling:60", "limit": 3}
DAY = {"id": "day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 1000}
SLOTS = {"id": "agents", "tenant": "acme", "meter": "concurrency", "window": "lifetime",
         "limit": 2}  # fmt: skip
SLOTS_POLICY = '"agents";q=2;qu="concurrent-requests"'
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def api(gov: Governor) -> Api:
    return Api(gov)


def authorize(api: Api, rid: str, tokens: int = 10, key: str = "acme-service", **extra: Any) -> Any:
    body = {"request_id": rid, "subject": ACME, "provider": "openai", "model": "gpt-4o-mini",
            "estimate": {"output_tokens": tokens}, **extra}  # fmt: skip
    return api.call("POST", "/v1/authorize", key, json=body)


def commit(api: Api, rid: str, tokens: int = 1) -> None:
    done = api.call("POST", "/v1/commit", "acme-service",
                    json={"request_id": rid, "usage": {"output_tokens": tokens}})  # fmt: skip
    assert done.status_code == 200, done.text


def beat(api: Api, lease: str, key: str | None = "acme-service", body: Any = None) -> Any:
    return api.call("POST", f"/v1/leases/{lease}/heartbeat", key, json=body)


def alive(api: Api, lease: str, body: Any = None) -> schemas.HeartbeatOut:
    answer = beat(api, lease, body=body)
    assert answer.status_code == 200, answer.text
    return schemas.HeartbeatOut.model_validate(answer.json())


def limits(answer: Any) -> tuple[str | None, str | None, str | None]:
    """The answer's RateLimit-Policy, RateLimit and Retry-After headers (None: absent)."""
    headers = answer.headers
    return headers.get("RateLimit-Policy"), headers.get("RateLimit"), headers.get("Retry-After")


def remaining(answer: Any) -> str:
    """The ``r`` of the answer's RateLimit header."""
    [r] = [part for part in answer.headers["RateLimit"].split(";") if part.startswith("r=")]
    return str(r.removeprefix("r="))


def refused(answer: Any, status: int) -> schemas.RefusalDetail:
    assert answer.status_code == status, answer.text
    return schemas.RefusalBody.model_validate(answer.json()).error


def after(start: datetime, seconds: float) -> str:
    return (start + timedelta(seconds=seconds)).isoformat()


def released(api: Api) -> list[tuple[str, str | None]]:
    """(request id, reason) of the tenant's released ledger events, oldest first."""
    page = api.call("GET", "/v1/events", "acme-viewer", params={"status": "released"})
    assert page.status_code == 200, page.text
    return [(e.request_id, e.reason) for e in schemas.EventPage.model_validate(page.json()).events]


# --- rate limits ---------------------------------------------------------------------------


def test_a_full_rolling_window_is_a_429_with_the_exact_retry_after(api: Api, clock: Clock) -> None:
    api.add_budgets(RPM)
    start = clock.now
    for i in range(3):  # at seconds 0, 10 and 20
        granted = authorize(api, f"r{i}")
        assert granted.status_code == 200, granted.text
        assert limits(granted)[0] == '"rpm";q=3;w=60'
        assert remaining(granted) == str(2 - i) and limits(granted)[2] is None
        commit(api, f"r{i}")
        if i < 2:
            clock.advance(seconds=10)
    answer = authorize(api, "r3")
    error = refused(answer, 429)
    # The call at second 0 leaves the window at 0 + 1 + 60: 41 s from second 20.
    assert limits(answer) == ('"rpm";q=3;w=60', '"rpm";r=0;t=41', "41")
    assert (error.code, error.reason, error.budget_id) == ("rate_limited", "rate_limited", "rpm")
    assert (error.remaining, error.limit, error.unit, error.currency) == (0, 3, "requests", None)
    retry_at = after(start, 61)
    assert error.retry_at == error.decision.retry_at == retry_at
    assert error.decision.refusals[0].retry_at == retry_at
    assert (error.decision.allowed, error.decision.reason) == (False, "rate_limited")
    assert "retry" in error.message
    clock.now = start + timedelta(seconds=61)
    assert authorize(api, "r3").status_code == 200


def test_retry_after_counts_whole_seconds_rounded_up(api: Api, clock: Clock) -> None:
    api.add_budgets(RPM | {"limit": 1})
    start = clock.now
    assert authorize(api, "r0").status_code == 200
    clock.now = start + timedelta(seconds=20.5)  # 40.5 s to wait: told 41, never 40
    assert limits(authorize(api, "r1"))[1:] == ('"rpm";r=0;t=41', "41")
    clock.now = start + timedelta(seconds=60, microseconds=999_999)
    answer = authorize(api, "r1")
    assert answer.status_code == 429 and limits(answer)[2] == "1"
    assert refused(answer, 429).retry_at == after(start, 61)
    clock.now = start + timedelta(seconds=61)
    assert authorize(api, "r1").status_code == 200


def test_a_call_larger_than_a_rate_limit_is_a_402_without_retry(api: Api) -> None:
    api.add_budgets({"id": "tpm", "tenant": "acme", "meter": "tokens", "window": "rolling:60",
                     "limit": 500})  # fmt: skip
    answer = authorize(api, "huge", tokens=501)
    error = refused(answer, 402)
    assert (error.code, error.reason, error.budget_id) == (
        "estimate_exceeds_limit", "estimate_exceeds_limit", "tpm")  # fmt: skip
    assert error.retry_at is None and error.decision.retry_at is None
    assert error.decision.refusals[0].retry_at is None
    assert "cannot help" in error.message
    policy, _, retry_after = limits(answer)
    assert (policy, remaining(answer), retry_after) == ('"tpm";q=500;qu="tokens";w=60', "500", None)
    assert authorize(api, "fits", tokens=500).status_code == 200  # nothing was taken


def test_a_budget_refusal_beside_a_rate_limit_is_a_402_without_retry_after(api: Api) -> None:
    api.add_budgets(RPM | {"limit": 1}, DAY | {"limit": 10})
    assert authorize(api, "r0", tokens=10).status_code == 200
    answer = authorize(api, "r1", tokens=1)  # the day is spent, and so is the minute
    error = refused(answer, 402)
    reasons = {r.budget_id: r.reason for r in error.decision.refusals}
    assert reasons == {"day": "hard_cap_exceeded", "rpm": "rate_limited"}
    # Waiting for the rate limit would not help: no retry time, no Retry-After.
    assert (error.code, error.budget_id, error.retry_at) == ("budget_exceeded", "day", None)
    assert error.decision.retry_at is None
    assert limits(answer) == ('"day";q=10;qu="tokens";w=86400', '"day";r=0;t=43200', None)


def test_a_call_refused_by_two_limits_waits_for_the_later(api: Api, clock: Clock) -> None:
    api.add_budgets(RPM | {"limit": 1}, SLOTS | {"limit": 1})
    start = clock.now
    assert authorize(api, "l1", ttl_seconds=300).status_code == 200
    clock.advance(seconds=10)
    answer = authorize(api, "l2")
    error = refused(answer, 429)
    retry = {r.budget_id: r.retry_at for r in error.decision.refusals}
    assert retry == {"rpm": after(start, 61), "agents": after(start, 300)}
    # The minute frees up first, but the slot only at second 300: that binds.
    assert error.decision.retry_at == error.retry_at == after(start, 300)
    assert limits(answer) == (
        '"agents";q=1;qu="concurrent-requests"', '"agents";r=0;t=290', "290")  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "now", "policy"),
    [
        (DAY, None, '"day";q=1000;qu="tokens";w=86400'),
        (DAY | {"meter": "requests"}, None, '"day";q=1000;w=86400'),
        (DAY | {"meter": "cost", "currency": "USD", "limit": "5.00"}, None,
         '"day";q=5000000;qu="micros";w=86400'),
        (DAY | {"window": "week"}, None, '"day";q=1000;qu="tokens";w=604800'),
        (DAY | {"window": "month"}, None, '"day";q=1000;qu="tokens";w=2592000'),  # November
        (DAY | {"window": "rolling:1h"}, None, '"day";q=1000;qu="tokens";w=3600'),
        # The day the clocks go back in Berlin has 25 hours.
        (DAY | {"window": "day@Europe/Berlin"}, datetime(2026, 10, 25, 12, tzinfo=UTC),
         '"day";q=1000;qu="tokens";w=90000'),
        (SLOTS | {"id": "day"}, None, '"day";q=2;qu="concurrent-requests"'),
    ],
)  # fmt: skip
def test_the_policy_header_names_the_quota_its_unit_and_window(
    api: Api, clock: Clock, spec: dict[str, Any], now: datetime | None, policy: str
) -> None:
    clock.now = now or clock.now
    api.add_budgets(spec)
    granted = authorize(api, "r1")
    assert granted.status_code == 200, granted.text
    assert limits(granted)[0] == policy
    assert granted.headers["X-Budget-Id"] == "day"  # the same binding budget


def test_a_day_budget_counts_down_to_midnight(api: Api, clock: Clock) -> None:
    api.add_budgets(DAY)
    granted = authorize(api, "r1", tokens=300)  # at noon UTC
    assert limits(granted) == ('"day";q=1000;qu="tokens";w=86400', '"day";r=700;t=43200', None)
    assert granted.headers["X-Budget-Remaining"] == "700"
    commit(api, "r1", 300)
    clock.now = datetime(2026, 11, 23, 23, 59, 59, 500_000, tzinfo=UTC)
    assert limits(authorize(api, "r2", tokens=100))[1] == '"day";r=600;t=1'
    answer = authorize(api, "r3", tokens=601)
    error = refused(answer, 402)
    assert (error.code, error.reason, error.retry_at) == (
        "budget_exceeded", "estimate_exceeds_remaining", None)  # fmt: skip
    assert limits(answer) == ('"day";q=1000;qu="tokens";w=86400', '"day";r=600;t=1', None)


def test_the_fastapi_route_answers_a_429_as_the_lean_path(gov: Governor, clock: Clock) -> None:
    lean = Api(gov)
    lean.add_budgets(RPM | {"limit": 1})
    assert authorize(lean, "r0").status_code == 200
    clock.advance(seconds=5)
    reference = TestClient(create_app(gov, lean=False))
    headers = {"Authorization": f"Bearer {lean.keys['acme-service']}"}
    body = {"request_id": "r1", "subject": ACME, "provider": "openai", "model": "gpt-4o-mini",
            "estimate": {"output_tokens": 10}}  # fmt: skip
    answers = [lean.client.post("/v1/authorize", json=body, headers=headers),
               reference.post("/v1/authorize", json=body, headers=headers)]  # fmt: skip
    got, want = ((a.status_code, limits(a), a.json()) for a in answers)
    assert got == want
    assert got[1] == ('"rpm";q=1;w=60', '"rpm";r=0;t=56', "56")


# --- concurrency limits and leases ---------------------------------------------------------


def test_a_full_concurrency_budget_is_a_429_until_the_soonest_lease_ends(
    api: Api, clock: Clock
) -> None:
    api.add_budgets(SLOTS)
    start = clock.now
    first = authorize(api, "l1", ttl_seconds=60)
    assert first.status_code == 200
    assert limits(first) == (SLOTS_POLICY, '"agents";r=1', None)  # no window, so no t
    assert first.json()["expires_at"] == after(start, 60)
    clock.advance(seconds=10)
    assert limits(authorize(api, "l2", ttl_seconds=120))[1] == '"agents";r=0'
    clock.advance(seconds=20)
    answer = authorize(api, "l3", ttl_seconds=60)
    error = refused(answer, 429)
    # l1 ends at second 60, 30 s from now (l2 at 130).
    assert limits(answer) == (SLOTS_POLICY, '"agents";r=0;t=30', "30")
    assert (error.code, error.reason, error.budget_id, error.unit) == (
        "concurrency_limited", "concurrency_limited", "agents", "leases")  # fmt: skip
    assert (error.remaining, error.limit, error.resets_at) == (0, 2, None)
    assert error.retry_at == error.decision.retry_at == after(start, 60)
    clock.now = start + timedelta(seconds=60)  # l1's client never came back: its slot does
    assert authorize(api, "l3", ttl_seconds=60).status_code == 200
    assert released(api) == [("l1", "lease_expired")]
    # A slot is freed by commit and by release, not only by expiry.
    commit(api, "l2")
    assert authorize(api, "l4").status_code == 200
    assert api.call("POST", "/v1/release", "acme-service", json={"request_id": "l4"}).json() == {
        "request_id": "l4", "state": "released"}  # fmt: skip
    assert remaining(authorize(api, "l5")) == "0"


def test_a_call_no_slot_can_hold_is_a_402_without_retry(api: Api) -> None:
    api.add_budgets(SLOTS | {"limit": 0})
    answer = authorize(api, "l1")
    error = refused(answer, 402)
    assert (error.code, error.reason, error.retry_at) == (
        "estimate_exceeds_limit", "estimate_exceeds_limit", None)  # fmt: skip
    assert limits(answer) == ('"agents";q=0;qu="concurrent-requests"', '"agents";r=0', None)


def test_a_heartbeat_extends_a_lease_up_to_its_maximum_duration(api: Api, clock: Clock) -> None:
    api.add_budgets(SLOTS | {"limit": 1}, DAY)
    start = clock.now
    granted = authorize(api, "run", ttl_seconds=60, max_duration_seconds=150)
    assert granted.status_code == 200 and granted.json()["expires_at"] == after(start, 60)
    clock.advance(seconds=50)
    beat50 = alive(api, "run")  # no body: the lease's own TTL
    assert (beat50.lease_id, beat50.alive, beat50.stop, beat50.reason) == ("run", True, False, None)
    assert (beat50.expires_at, beat50.max_until) == (after(start, 110), after(start, 150))
    views = {v.budget_id: v for v in beat50.budgets}
    assert (views["agents"].reserved, views["agents"].unit, views["day"].reserved) == (
        1, "leases", 10)  # fmt: skip
    clock.advance(seconds=50)  # past the first TTL, kept alive: nobody takes its slot
    assert refused(authorize(api, "other"), 429).retry_at == after(start, 110)
    assert alive(api, "run", {"ttl_seconds": 30}).expires_at == after(start, 130)
    assert alive(api, "run", {"ttl_seconds": 10}).expires_at == after(start, 130)  # not shortened
    clock.advance(seconds=20)
    assert alive(api, "run", {"ttl_seconds": 600}).expires_at == after(start, 150)  # the cap
    clock.advance(seconds=30)
    ended = alive(api, "run")
    assert (ended.alive, ended.stop, ended.reason) == (False, True, "max_duration")
    assert (ended.expires_at, ended.max_until) == (after(start, 150), after(start, 150))
    assert {v.budget_id: v.reserved for v in ended.budgets} == {"agents": 0, "day": 0}
    assert released(api) == [("run", "lease_expired")]
    assert authorize(api, "other").status_code == 200


def test_a_heartbeat_tells_an_ended_lease_to_stop(api: Api, clock: Clock) -> None:
    api.add_budgets(SLOTS | {"limit": 3})
    for lease in ("lost", "revoked", "done"):
        assert authorize(api, lease, ttl_seconds=60).status_code == 200
    revoke = {"request_id": "revoked", "reason": "revoked"}
    assert api.call("POST", "/v1/release", "acme-service", json=revoke).status_code == 200
    commit(api, "done")
    clock.advance(seconds=60)
    stops = {lease: alive(api, lease) for lease in ("lost", "revoked", "done")}
    assert {lease: (b.alive, b.stop, b.reason) for lease, b in stops.items()} == {
        "lost": (False, True, "expired"),
        "revoked": (False, True, "released"),
        "done": (False, True, "committed"),
    }
    assert stops["lost"].expires_at == after(clock.now, 0)
    # Reclaimed once: it stays ended, and the ledger says why.
    assert (alive(api, "lost").reason, alive(api, "lost").stop) == ("released", True)
    assert released(api) == [("revoked", "revoked"), ("lost", "lease_expired")]
    assert all(b.reserved == 0 for b in alive(api, "lost").budgets)


def test_a_heartbeat_keeps_a_plain_reservation_alive_by_its_own_ttl(api: Api, clock: Clock) -> None:
    api.add_budgets(DAY)  # no concurrency budget, no maximum duration: not a lease
    assert authorize(api, "stream", ttl_seconds=30).status_code == 200
    for _ in range(3):
        clock.advance(seconds=20)
        assert alive(api, "stream").expires_at == after(clock.now, 30)


def test_an_abandoned_lease_kept_alive_before_is_swept_once(
    api: Api, gov: Governor, clock: Clock, backend: str, request: pytest.FixtureRequest
) -> None:
    api.add_budgets(SLOTS, DAY)
    assert authorize(api, "run", ttl_seconds=30).status_code == 200
    clock.advance(seconds=20)
    assert alive(api, "run").expires_at == after(clock.now, 30)
    clock.advance(seconds=60)  # its holder died: no more beats, no call since
    assert gov.sweep() == 1
    assert released(api) == [("run", "lease_expired")]
    status = api.call("GET", "/v1/status", "acme-service", params=ACME).json()["budgets"]
    assert {b["budget_id"]: b["reserved"] for b in status} == {"agents": 0, "day": 0}


def test_who_may_heartbeat_a_lease(api: Api) -> None:
    api.add_budgets(SLOTS)
    assert authorize(api, "run", ttl_seconds=60).status_code == 200
    unknown = beat(api, "nobody")
    assert unknown.status_code == 404
    assert schemas.ErrorBody.model_validate(unknown.json()).error.code == "not_found"
    # Another tenant cannot tell the lease exists: the same 404 as for no lease at all.
    for key, body in [("globex-service", None), ("globex-admin", None),
                      ("admin", {"tenant": "globex"})]:  # fmt: skip
        answer = beat(api, "run", key, body)
        assert answer.status_code == 404, key
        assert answer.json()["error"] == {"code": "not_found", "message": "no lease with id 'run'"}
    viewer = beat(api, "run", "acme-viewer")  # a viewer may not write usage
    assert viewer.status_code == 403 and viewer.json()["error"]["code"] == "forbidden"
    other = beat(api, "run", body={"tenant": "globex"})  # a tenant key naming another
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"
    assert beat(api, "run", None).status_code == 401
    for key, body in [("acme-service", {"tenant": "acme"}), ("acme-admin", None),
                      ("admin", None), ("admin", {"tenant": "acme"})]:  # fmt: skip
        answer = beat(api, "run", key, body)
        assert answer.status_code == 200 and answer.json()["alive"], (key, body)


#: refused by pydantic (not integers) and by the Governor (out of range), named alike
BAD_SECONDS = ["60", 1.5, True, 0, -1, 604_801]


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_a_bad_heartbeat_ttl_is_a_422_naming_ttl_seconds(api: Api, value: Any) -> None:
    api.add_budgets(SLOTS)
    assert authorize(api, "run").status_code == 200
    answer = beat(api, "run", body={"ttl_seconds": value})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "ttl_seconds"


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_a_bad_maximum_duration_is_a_422_naming_max_duration_seconds(api: Api, value: Any) -> None:
    api.add_budgets(SLOTS)
    answer = authorize(api, "run", max_duration_seconds=value)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "max_duration_seconds"


def test_a_heartbeat_body_takes_only_its_fields(api: Api) -> None:
    api.add_budgets(SLOTS)
    authorize(api, "run")
    for body, field in [({"ttl": 60}, "ttl"), ({"tenant": 5}, "tenant"), ([60], "body")]:
        answer = beat(api, "run", body=body)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["field"] == field, body


# --- the Python clients --------------------------------------------------------------------


def test_the_client_keeps_a_lease_and_reads_a_429_as_a_refusal(gov: Governor, clock: Clock) -> None:
    api = Api(gov)
    # One slot per agent; one chat request a minute (an agent run is no chat).
    api.add_budgets(SLOTS | {"limit": 1, "per": "agent"},
                    RPM | {"limit": 1, "match": {"feature": "chat"}})  # fmt: skip
    chat = {"tenant": "acme", "user": "u1", "feature": "chat"}
    start = clock.now
    with Client("http://allotment", api.keys["acme-service"], http=api.client) as remote:
        assert remote.authorize("c1", chat, "openai", "gpt-4o-mini").allowed
        limited = remote.authorize("c2", chat, "openai", "gpt-4o-mini")
        assert isinstance(limited, RemoteDecision)
        assert (limited.allowed, limited.reason, limited.retry_at) == (
            False, "rate_limited", after(start, 61))  # fmt: skip
        assert limited.refusals[0].retry_at == limited.retry_at
        granted = remote.authorize("run", ACME, "openai", "gpt-4o-mini", {"output_tokens": 10},
                                   ttl=60, max_duration=90)  # fmt: skip
        assert granted.allowed and granted.expires_at == after(start, 60)
        clock.advance(seconds=40)
        kept = remote.heartbeat("run")
        assert isinstance(kept, RemoteHeartbeat)
        assert (kept.alive, kept.stop, kept.expires_at, kept.max_until) == (
            True, False, after(start, 90), after(start, 90))  # fmt: skip
        assert [(v.budget_id, v.reserved, v.unit) for v in kept.budgets] == [
            ("agents", 1, "leases")]  # fmt: skip
        busy = remote.authorize("next", ACME, "openai", "gpt-4o-mini", ttl=60)
        assert (busy.allowed, busy.reason, busy.retry_at) == (
            False, "concurrency_limited", after(start, 90))  # fmt: skip
        clock.advance(seconds=50)
        ended = remote.heartbeat("run", ttl=30, tenant="acme")
        assert (ended.alive, ended.stop, ended.reason) == (False, True, "max_duration")
        assert remote.authorize("next", ACME, "openai", "gpt-4o-mini").allowed
        with pytest.raises(NotFoundError):
            remote.heartbeat("nobody")
        with pytest.raises(ValidationError):
            remote.heartbeat("next", ttl=0)
        with pytest.raises(AccessDenied):
            remote.heartbeat("next", tenant="globex")


def test_the_async_client_keeps_a_lease_and_reads_a_429_as_a_refusal(
    gov: Governor, clock: Clock
) -> None:
    api = Api(gov)
    api.add_budgets(SLOTS | {"limit": 1})
    start = clock.now
    transport = httpx.ASGITransport(app=create_app(gov))

    async def main() -> None:
        secret = api.keys["acme-service"]
        async with AsyncClient("http://allotment", secret, transport=transport) as remote:
            granted = await remote.authorize("run", ACME, "openai", "gpt-4o-mini",
                                             ttl=60, max_duration=100)  # fmt: skip
            assert granted.allowed
            busy = await remote.authorize("next", ACME, "openai", "gpt-4o-mini")
            assert (busy.allowed, busy.reason, busy.retry_at) == (
                False, "concurrency_limited", after(start, 60))  # fmt: skip
            clock.advance(seconds=30)
            kept = await remote.heartbeat("run", ttl=45)
            assert (kept.alive, kept.expires_at, kept.max_until) == (
                True, after(start, 75), after(start, 100))  # fmt: skip
            assert (await remote.release("run")).value == "released"
            stopped = await remote.heartbeat("run")
            assert (stopped.alive, stopped.stop, stopped.reason) == (False, True, "released")
            assert (await remote.authorize("next", ACME, "openai", "gpt-4o-mini")).allowed
            with pytest.raises(NotFoundError):
                await remote.heartbeat("nobody")

    asyncio.run(main())


# --- the README ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "ids"),
    [
        ("### Rate limits", {"acme-rpm", "acme-tpm", "acme-day"}),
        ("### Leases (", {"acme-agents", "agent-slots", "run-tokens"}),
    ],
)
def test_the_readme_budgets_load_as_printed(
    gov: Governor, tmp_path: Path, section: str, ids: set[str]
) -> None:
    readme = README.read_text()
    block = re.search(r"```yaml\n(.*?)```", readme[readme.index(section) :], re.S)
    assert block is not None
    path = tmp_path / "limits.yaml"
    path.write_text(block.group(1))
    assert {b.id for b in gov.load_budgets(path)} == ids
