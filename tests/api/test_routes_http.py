"""Routes over HTTP (issue 19), on every backend, with a hand-moved clock.

``POST /v1/authorize`` with ``routes`` tries the candidates in order and
reserves the first whose every budget passes: the 200 names the ``route``
served and each candidate ``skipped`` with its reason. With none left, a 402
(a 429 when some candidate waits only on a rate or concurrency limit, with
``Retry-After`` the soonest any can fit) lists every candidate's reason in
``error.routes``. Bad candidates are a 422 naming the field. The ledger keeps
where the call was served (tag ``backend``) and what was asked for
(``requested_route``). The Python client reads all of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app, schemas
from allotment.client import Client, RemoteDecision
from allotment.core.routes import Route
from allotment.errors import ValidationError
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.api.test_api import Api
from tests.conftest import Clock
from tests.store.test_routes import ACME, CALL, HOSTED, OWN, ROUTES, SECOND

#: the tenant's day of tokens: every candidate's binding budget (the rate-limit headers)
DAY = {"id": "day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 1000}
DAY_POLICY = '"day";q=1000;qu="tokens";w=86400'
#: one request a minute on openai
RPM = {"id": "rpm", "tenant": "acme", "meter": "requests", "window": "rolling:60", "limit": 1,
       "match": {"provider": "openai"}}  # fmt: skip


@pytest.fixture
def api(gov: Governor) -> Api:
    return Api(gov)


def cap(budget_id: str, limit: int, **match: str) -> dict[str, Any]:
    """A day of tokens for the candidates that ``match`` selects."""
    return {"id": budget_id, "tenant": "acme", "meter": "tokens", "window": "day",
            "limit": limit, "match": match}  # fmt: skip


def body(rid: str, routes: Any = ROUTES) -> dict[str, Any]:
    """An authorization of ``CALL`` over ``routes``, asking for the first (else HOSTED)."""
    first = routes[0] if routes and isinstance(routes, list) else HOSTED
    return {"request_id": rid, "subject": ACME, "provider": first["provider"],
            "model": first["model"], "estimate": CALL, "routes": routes}  # fmt: skip


def authorize(api: Api, rid: str, routes: list[dict[str, Any]] = ROUTES) -> Any:
    return api.call("POST", "/v1/authorize", "acme-service", json=body(rid, routes))


def granted(answer: Any) -> schemas.DecisionOut:
    assert answer.status_code == 200, answer.text
    return schemas.DecisionOut.model_validate(answer.json())


def commit(api: Api, rid: str, **extra: Any) -> Any:
    done = api.call("POST", "/v1/commit", "acme-service",
                    json={"request_id": rid, "usage": CALL, **extra})  # fmt: skip
    assert done.status_code == 200, done.text
    return schemas.CommitOut.model_validate(done.json())


def limits(answer: Any) -> tuple[str | None, str | None, str | None]:
    """The answer's RateLimit-Policy, RateLimit and Retry-After headers (None: absent)."""
    headers = answer.headers
    return headers.get("RateLimit-Policy"), headers.get("RateLimit"), headers.get("Retry-After")


def reasons(skipped: list[Any]) -> list[tuple[str, str | None, str | None]]:
    """(provider/model@backend, reason, budget id) of each candidate passed over."""
    return [(Route(s.provider, s.model, s.backend).label, s.reason, s.budget_id) for s in skipped]


def events(api: Api, **params: str) -> list[schemas.EventOut]:
    page = api.call("GET", "/v1/events", "acme-viewer", params=params)
    assert page.status_code == 200, page.text
    return schemas.EventPage.model_validate(page.json()).events


def after(start: datetime, seconds: float) -> str:
    return (start + timedelta(seconds=seconds)).isoformat()


# --- a candidate served ---------------------------------------------------------------------


def test_the_first_candidate_with_room_is_served_and_the_others_named(api: Api) -> None:
    api.add_budgets(DAY, cap("openai", 0, provider="openai"), cap("hosted", 100, backend="hosted"))
    earlier = {"request_id": "earlier", "subject": ACME | {"tags": {"backend": "hosted"}},
               "provider": "anthropic", "model": "claude-3-5-haiku",
               "usage": {"input_tokens": 50}}  # fmt: skip
    used = api.call("POST", "/v1/events", "acme-service", json={"events": [earlier]})
    assert used.status_code == 200, used.text
    answer = authorize(api, "r1")
    decision = granted(answer)
    assert (decision.allowed, decision.reason, decision.refusals) == (True, None, [])
    assert decision.route is not None and decision.route.model_dump() == OWN
    first, second = decision.skipped
    # Each names its first refusal (the budgets' order): the hosted sub-cap on both.
    assert reasons(decision.skipped) == [
        ("openai/gpt-4o-mini@hosted", "estimate_exceeds_remaining", "hosted"),
        ("anthropic/claude-3-5-haiku@hosted", "estimate_exceeds_remaining", "hosted"),
    ]
    assert (first.reason, first.budget_id) == (
        first.refusals[0].reason, first.refusals[0].budget_id)  # fmt: skip
    assert {(r.budget_id, r.reason) for r in first.refusals} == {
        ("openai", "hard_cap_exceeded"), ("hosted", "estimate_exceeds_remaining")}  # fmt: skip
    assert [(r.budget_id, r.requested, r.remaining, r.limit) for r in second.refusals] == [
        ("hosted", 100, 50, 100)]  # fmt: skip
    assert first.retry_at is None and second.retry_at is None  # waiting cannot help
    # Reserved on the day only: the own backend is in neither sub-cap.
    assert [(v.budget_id, v.used, v.reserved) for v in decision.budgets] == [("day", 50, 100)]
    # The headers name the budget that binds the route served.
    assert limits(answer) == (DAY_POLICY, '"day";r=850;t=43200', None)
    assert answer.headers["X-Budget-Id"] == "day"


def test_a_route_that_fits_at_once_skips_nothing(api: Api) -> None:
    api.add_budgets(DAY)
    answer = authorize(api, "r1")
    decision = granted(answer)
    assert decision.route is not None and decision.route.model_dump() == HOSTED
    assert decision.skipped == []
    assert limits(answer) == (DAY_POLICY, '"day";r=900;t=43200', None)
    # Without routes, no route is named (the answer is as it always was).
    plain = granted(authorize(api, "r2", None))  # type: ignore[arg-type]
    assert (plain.route, plain.skipped) == (None, [])


def test_the_ledger_keeps_the_route_served_and_the_route_asked_for(api: Api) -> None:
    api.add_budgets(DAY, cap("openai", 0, provider="openai"), cap("hosted", 1000, backend="hosted"))
    assert granted(authorize(api, "fell-back")).route.model_dump() == SECOND  # type: ignore[union-attr]
    committed = commit(api, "fell-back")
    assert (committed.event.provider, committed.event.model) == ("anthropic", "claude-3-5-haiku")
    assert granted(authorize(api, "direct", [SECOND, OWN])).skipped == []
    commit(api, "direct")
    by_id = {e.request_id: e for e in events(api, status="success")}
    fell_back, direct = by_id["fell-back"], by_id["direct"]
    assert (fell_back.provider, fell_back.model) == ("anthropic", "claude-3-5-haiku")
    assert fell_back.subject.tags == {
        "backend": "hosted", "requested_route": "openai/gpt-4o-mini@hosted"}  # fmt: skip
    assert direct.subject.tags == {"backend": "hosted"}  # served as asked: no requested_route
    # Both counted on the hosted sub-cap, where they were reserved; none on openai.
    status = api.call("GET", "/v1/status", "acme-viewer",
                      params={"tenant": "acme", "user": "u1", "tag": "backend:hosted"})  # fmt: skip
    assert status.status_code == 200, status.text
    used = {v["budget_id"]: v["used"] for v in status.json()["budgets"]}
    assert used == {"day": 200, "hosted": 200, "openai": 0}


def test_a_commit_naming_another_model_counts_where_it_ran(api: Api) -> None:
    api.add_budgets(cap("openai", 0, provider="openai"),
                    cap("haiku", 1000, model="claude-3-5-haiku"),
                    cap("sonnet", 1000, model="claude-sonnet-4"))  # fmt: skip
    assert granted(authorize(api, "r1")).route.model_dump() == SECOND  # type: ignore[union-attr]
    committed = commit(api, "r1", model="claude-sonnet-4")
    assert committed.event.model == "claude-sonnet-4"
    for model, budget, used in (("claude-sonnet-4", "sonnet", 100), ("claude-3-5-haiku",
                                                                      "haiku", 0)):  # fmt: skip
        status = api.call("GET", "/v1/status", "acme-viewer", params={
            "tenant": "acme", "user": "u1", "provider": "anthropic", "model": model})  # fmt: skip
        assert {v["budget_id"]: v["used"] for v in status.json()["budgets"]}[budget] == used


def test_a_retry_replays_the_route_reserved(api: Api) -> None:
    api.add_budgets(DAY, cap("openai", 0, provider="openai"))
    first = granted(authorize(api, "r1"))
    api.add_budgets(cap("haiku", 0, model="claude-3-5-haiku"))  # the second would now be refused
    again = granted(authorize(api, "r1"))
    assert again.replayed and not first.replayed
    assert again.route == first.route and first.route.model_dump() == SECOND  # type: ignore[union-attr]
    # Reserved once; the budget added since holds nothing of it.
    assert [(v.budget_id, v.reserved) for v in again.budgets] == [("day", 100), ("haiku", 0)]
    commit(api, "r1")
    [event] = events(api)
    assert (event.model, event.subject.tags) == ("claude-3-5-haiku", {
        "backend": "hosted", "requested_route": "openai/gpt-4o-mini@hosted"})  # fmt: skip


# --- no candidate left ----------------------------------------------------------------------


def test_with_no_route_left_the_402_names_every_candidates_reason(api: Api) -> None:
    api.add_budgets(DAY | {"limit": 10})
    answer = authorize(api, "r1")
    assert answer.status_code == 402, answer.text
    schemas.ErrorBody.model_validate(answer.json())
    error = answer.json()["error"]
    decision = schemas.DecisionOut.model_validate(error["decision"])
    assert (error["code"], error["budget_id"], error["reason"]) == (
        "budget_exceeded", "day", "estimate_exceeds_remaining")  # fmt: skip
    assert (error["remaining"], error["limit"], error["unit"], error["retry_at"]) == (
        10, 10, "tokens", None)  # fmt: skip
    assert error["message"] == (
        "No route can take this request (openai/gpt-4o-mini@hosted: estimate_exceeds_remaining; "
        "anthropic/claude-3-5-haiku@hosted: estimate_exceeds_remaining; "
        "self/llama-3-70b@own: estimate_exceeds_remaining).")  # fmt: skip
    routes = [schemas.SkippedOut.model_validate(r) for r in error["routes"]]
    assert routes == decision.skipped
    assert [Route(r.provider, r.model, r.backend).to_dict() for r in routes] == ROUTES
    assert {(r.reason, r.budget_id, r.retry_at) for r in routes} == {
        ("estimate_exceeds_remaining", "day", None)}  # fmt: skip
    assert (decision.allowed, decision.route, decision.retry_at) == (False, None, None)
    assert [(r.budget_id, r.reason) for r in decision.refusals] == [  # the first candidate's
        ("day", "estimate_exceeds_remaining")]  # fmt: skip
    assert limits(answer) == ('"day";q=10;qu="tokens";w=86400', '"day";r=10;t=43200', None)
    [blocked] = events(api, status="blocked")  # one blocked event, for the route asked for
    assert (blocked.model, blocked.budget_id, blocked.reason) == (
        "gpt-4o-mini", "day", "estimate_exceeds_remaining")  # fmt: skip


def test_a_routed_refusal_fits_the_refusal_schema(api: Api) -> None:
    api.add_budgets(DAY | {"limit": 10})
    answer = authorize(api, "r1")
    assert answer.status_code == 402, answer.text
    error = schemas.RefusalBody.model_validate(answer.json()).error
    assert error.decision.skipped and error.code == "budget_exceeded"


def test_a_skipped_candidates_refusals_name_their_unit(api: Api) -> None:
    api.add_budgets(DAY | {"limit": 10})
    answer = authorize(api, "r1")
    error = answer.json()["error"]
    assert error["decision"]["refusals"][0]["unit"] == "tokens"
    assert [r["refusals"][0]["unit"] for r in error["routes"]] == ["tokens"] * 3


@pytest.mark.parametrize("order", ["limited first", "limited second"])
def test_a_rate_limited_candidate_beside_a_spent_one_is_a_429(
    api: Api, clock: Clock, order: str
) -> None:
    api.add_budgets(RPM, cap("haiku", 0, model="claude-3-5-haiku"))
    routes = [HOSTED, SECOND] if order == "limited first" else [SECOND, HOSTED]
    start = clock.now
    assert granted(authorize(api, "r1", [HOSTED])).route.model_dump() == HOSTED  # type: ignore[union-attr]
    clock.advance(seconds=10)
    answer = authorize(api, "r2", routes)
    assert answer.status_code == 429, answer.text
    schemas.ErrorBody.model_validate(answer.json())
    error = answer.json()["error"]
    decision = schemas.DecisionOut.model_validate(error["decision"])
    by_label = {label: (reason, budget) for label, reason, budget in reasons(decision.skipped)}
    assert by_label == {
        "openai/gpt-4o-mini@hosted": ("rate_limited", "rpm"),
        "anthropic/claude-3-5-haiku@hosted": ("hard_cap_exceeded", "haiku"),
    }
    retry = {s.model: s.retry_at for s in decision.skipped}
    assert retry == {"gpt-4o-mini": after(start, 61), "claude-3-5-haiku": None}
    # The soonest any candidate can take the call: the minute's, 51 s from now.
    assert error["code"] == "rate_limited"
    assert error["retry_at"] == decision.retry_at == after(start, 61)
    assert answer.headers["Retry-After"] == "51"
    assert [schemas.SkippedOut.model_validate(r) for r in error["routes"]] == decision.skipped
    labels = [Route(**r).label for r in routes]
    assert error["message"].startswith(f"No route can take this request ({labels[0]}: ")
    assert labels[1] in error["message"]
    policy, ratelimit, _ = limits(answer)
    assert policy is not None and ratelimit is not None and ratelimit.endswith(";t=51")
    if order == "limited first":
        assert (policy, ratelimit) == ('"rpm";q=1;w=60', '"rpm";r=0;t=51')
    clock.now = start + timedelta(seconds=61)
    assert granted(authorize(api, "r2", routes)).route.model_dump() == HOSTED  # type: ignore[union-attr]


def test_a_429s_rate_limit_headers_name_the_limit_it_waits_on(api: Api, clock: Clock) -> None:
    api.add_budgets(RPM, cap("haiku", 0, model="claude-3-5-haiku"))
    assert granted(authorize(api, "r1", [HOSTED])).allowed
    clock.advance(seconds=10)
    answer = authorize(api, "r2", [SECOND, HOSTED])
    assert answer.status_code == 429, answer.text
    assert limits(answer) == ('"rpm";q=1;w=60', '"rpm";r=0;t=51', "51")


def test_a_candidate_waiting_on_a_limit_falls_back_at_once(api: Api, clock: Clock) -> None:
    api.add_budgets(DAY, RPM)
    assert granted(authorize(api, "r1")).route.model_dump() == HOSTED  # type: ignore[union-attr]
    clock.advance(seconds=5)
    answer = authorize(api, "r2")
    decision = granted(answer)  # a 200, not a 429: the second candidate had room
    assert decision.route is not None and decision.route.model_dump() == SECOND
    [skipped] = decision.skipped
    assert (skipped.reason, skipped.budget_id, skipped.retry_at) == (
        "rate_limited", "rpm", after(clock.now, 56))  # fmt: skip
    assert "Retry-After" not in answer.headers
    assert limits(answer)[:2] == (DAY_POLICY, '"day";r=800;t=43195')


# --- bad candidates -------------------------------------------------------------------------


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "fastapi"])
@pytest.mark.parametrize(
    ("routes", "field"),
    [
        pytest.param([SECOND, HOSTED], "routes[0]", id="first-is-not-the-call"),
        pytest.param([HOSTED, {"provider": "self"}], "routes[1].model", id="no-model"),
        pytest.param([HOSTED, {"model": "x"}], "routes[1].provider", id="no-provider"),
        pytest.param([HOSTED, {**OWN, "weight": 1}], "routes[1].weight", id="unknown-field"),
        pytest.param([HOSTED, {**OWN, "backend": 7}], "routes[1].backend", id="backend-not-text"),
        pytest.param([HOSTED, "self/llama-3-70b"], "routes[1]", id="not-an-object"),
        pytest.param([], "routes", id="empty"),
        pytest.param([HOSTED, HOSTED], "routes", id="twice"),
        pytest.param([HOSTED] + [{"provider": "p", "model": f"m{i}"} for i in range(8)],
                     "routes", id="nine"),
        pytest.param("openai/gpt-4o-mini", "routes", id="not-a-list"),
    ],
)  # fmt: skip
def test_bad_routes_are_a_422_naming_the_field(
    gov: Governor, lean: bool, routes: Any, field: str
) -> None:
    _, secret = gov.create_key("service", "acme")
    http = TestClient(create_app(gov, lean=lean), headers={"Authorization": f"Bearer {secret}"})
    request = body("r1", routes) | {"provider": "openai", "model": "gpt-4o-mini"}
    answer = http.post("/v1/authorize", json=request)
    assert answer.status_code == 422, answer.text
    error = schemas.ErrorBody.model_validate(answer.json()).error
    assert (error.code, error.model_extra) == ("invalid_request", {"field": field})
    assert error.message.startswith(f"{field}: ") or field in error.message
    assert gov.events(EventQuery(tenant="acme")) == []  # refused before any budget was read


# --- the Python client ----------------------------------------------------------------------


def test_the_client_authorizes_over_routes(gov: Governor, clock: Clock) -> None:
    api = Api(gov)
    api.add_budgets(DAY, RPM, cap("openai", 1000, provider="openai"))
    remote = Client("http://allotment", api.keys["acme-service"], http=TestClient(create_app(gov)))
    start = clock.now
    served = remote.authorize("c1", ACME, "openai", "gpt-4o-mini", CALL,
                              routes=[HOSTED, Route(**OWN)])  # fmt: skip
    assert isinstance(served, RemoteDecision)
    assert (served.allowed, served.route, served.skipped) == (True, HOSTED, [])
    fell_back = remote.authorize("c2", ACME, "openai", "gpt-4o-mini", CALL, routes=[HOSTED, OWN])
    assert (fell_back.allowed, fell_back.route) == (True, OWN)
    [skipped] = fell_back.skipped
    assert {k: skipped[k] for k in ("provider", "model", "backend", "reason", "budget_id")} == (
        HOSTED | {"reason": "rate_limited", "budget_id": "rpm"})  # fmt: skip
    assert skipped["retry_at"] == after(start, 61) and skipped["refusals"][0]["limit"] == 1
    assert remote.commit("c2", CALL).event.subject.tags == (
        ("backend", "own"), ("requested_route", "openai/gpt-4o-mini@hosted"))  # fmt: skip
    again = remote.authorize("c2", ACME, "openai", "gpt-4o-mini", CALL, routes=[HOSTED, OWN])
    assert again.route == OWN  # a committed request id answers with its route too
    # Rate-limited on its only route: a 429 read as a refusal, with the candidate named.
    limited = remote.authorize("c3", ACME, "openai", "gpt-4o-mini", CALL, routes=[HOSTED])
    assert (limited.allowed, limited.reason, limited.route) == (False, "rate_limited", None)
    assert limited.retry_at == after(start, 61)
    assert [(s["model"], s["reason"]) for s in limited.skipped] == [("gpt-4o-mini",
                                                                     "rate_limited")]  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        remote.authorize("c4", ACME, "openai", "gpt-4o-mini", CALL, routes=[OWN, HOSTED])
    assert caught.value.field == "routes[0]"


# --- a plan's sub-cap as a share ------------------------------------------------------------


def test_a_plan_with_a_share_fits_the_plan_schema(gov: Governor) -> None:
    _, secret = gov.create_key("admin")
    http = TestClient(create_app(gov), headers={"Authorization": f"Bearer {secret}"})
    plan = {"id": "core", "tenant": "relay", "per": "install", "default": True, "budgets": [
        {"id": "credits", "meter": "credits", "window": "lifetime", "limit": 100},
        {"id": "hosted", "meter": "credits", "window": "lifetime", "share": "0.5",
         "match": {"backend": "hosted"}}]}  # fmt: skip
    saved = http.put("/v1/plans/core", json=plan)
    assert saved.status_code == 200, saved.text
    assert saved.json()["budgets"][1]["share"] == "0.5"
    schemas.PlanOut.model_validate(saved.json())
