"""Credit pools over HTTP (the real app and store, on every backend): grants added
idempotently and voided, a member's credit and auto top-up, auto top-up resumed,
the credit ledger, who may do each, and the 402 ``credits_exhausted`` of a refused
call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app, schemas
from allotment.governor import Governor
from allotment.payments import TestGateway
from tests.api.test_api import Api
from tests.conftest import Clock

ACME = {"tenant": "acme", "user": "u1"}
#: 100 tokens a month, then grants
POOL = {"id": "plan", "tenant": "acme", "meter": "tokens", "window": "month", "limit": 100,
        "credits": True}  # fmt: skip
START = "2026-11-01T00:00:00Z"
GRANTS = "/v1/pools/plan/grants"


@pytest.fixture
def api(make_governor: Callable[..., Governor]) -> Api:
    api = Api(make_governor())
    assert api.call("POST", "/v1/budgets", "acme-admin", json=POOL).status_code == 201
    return api


def grant(api: Api, amount: Any, key: str = "acme-admin", **terms: Any) -> Any:
    return api.call("POST", GRANTS, key, json={"amount": amount, **terms})


def authorize(api: Api, rid: str, tokens: int, subject: dict[str, str] = ACME) -> Any:
    body = {"request_id": rid, "subject": subject, "provider": "openai", "model": "gpt-4o-mini",
            "estimate": {"output_tokens": tokens}}  # fmt: skip
    return api.call("POST", "/v1/authorize", "acme-service", json=body)


def test_a_grant_is_added_once_per_payment_id(api: Api) -> None:
    added = grant(api, 50, idempotency_key="pay_1", metadata={"order": "o-7"})
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["amount"], body["unit"], body["display"], body["replayed"]) == (
        50, "tokens", {"amount": "50"}, False)  # fmt: skip
    assert (body["pool"], body["tenant"], body["kind"], body["metadata"]) == (
        "plan", "acme", "purchase", {"order": "o-7"})  # fmt: skip
    schemas.AddedGrantOut.model_validate(body)
    again = grant(api, 50, idempotency_key="pay_1", metadata={"order": "o-7"})
    assert again.status_code == 200 and again.json()["replayed"]
    assert again.json()["id"] == body["id"]
    other = grant(api, 51, idempotency_key="pay_1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
    by_id = grant(api, 5, id="promo-1", kind="promotional", effective_at=START)
    assert by_id.status_code == 201 and by_id.json()["id"] == "promo-1"
    assert grant(api, 5, id="promo-1", kind="promotional", effective_at=START).status_code == 200
    assert grant(api, 6, id="promo-1").status_code == 409
    pool = api.call("GET", "/v1/pools/plan", "acme-viewer").json()
    assert [g["id"] for g in pool["grants"]] == ["promo-1", body["id"]]  # promotional first
    assert (pool["available"], pool["debt"], pool["auto_topup"]) == (55, 0, None)


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        ({"amount": "-1"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": "1.5"}, "amount"),  # tokens are whole
        ({"amount": 1, "effective_at": "2026-11-01T00:00:00"}, "effective_at"),
        ({"amount": 1, "expires_at": "tomorrow"}, "expires_at"),
        ({"amount": 1, "effective_at": START, "expires_at": START}, "expires_at"),
        ({"amount": 1, "kind": "gift"}, "kind"),
        ({"amount": 1, "priority": True}, "priority"),
        ({"amount": 1, "priority": 2**40}, "priority"),
        ({"amount": 1, "member": "u1"}, "member"),  # the pool is not counted per member
        ({"amount": 1, "id": "no spaces"}, "id"),
        ({"amount": 1, "idempotency_key": ""}, "idempotency_key"),
        ({"amount": 1, "metadata": {"a": 1}}, "metadata.a"),
        ({"amount": 1, "colour": "red"}, "colour"),
        ({}, "amount"),
    ],
)
def test_bad_grants_name_the_field(api: Api, terms: dict[str, Any], field: str) -> None:
    response = api.call("POST", GRANTS, "acme-admin", json=terms)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert api.call("GET", "/v1/pools/plan", "acme-viewer").json()["grants"] == []


def test_only_credit_pools_take_grants_and_members_must_fit(api: Api) -> None:
    plain = {"id": "day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 9}
    assert api.call("POST", "/v1/budgets", "acme-admin", json=plain).status_code == 201
    for method, path, body in [("POST", "/v1/pools/day/grants", {"amount": 1}),
                               ("GET", "/v1/pools/day", None),
                               ("GET", "/v1/pools/day/ledger", None)]:  # fmt: skip
        response = api.call(method, path, "acme-admin", json=body)
        assert response.status_code == 422 and response.json()["error"]["field"] == "pool"
    assert (
        api.call("POST", "/v1/pools/nope/grants", "acme-admin", json={"amount": 1}).status_code
        == 404
    )
    assert api.call("GET", "/v1/pools/nope", "acme-viewer").status_code == 404
    per_user = POOL | {"id": "seats", "per": "user"}
    assert api.call("POST", "/v1/budgets", "acme-admin", json=per_user).status_code == 201
    unnamed = api.call("POST", "/v1/pools/seats/grants", "acme-admin", json={"amount": 1})
    assert unnamed.status_code == 422 and unnamed.json()["error"]["field"] == "member"
    named = api.call("POST", "/v1/pools/seats/grants", "acme-admin",
                     json={"amount": 500, "member": "u1"})  # fmt: skip
    assert named.status_code == 201 and named.json()["member"] == "u1"
    mine = api.call("GET", "/v1/pools/seats", "acme-viewer", params={"member": "u1"}).json()
    assert (mine["member"], mine["available"]) == ("u1", 500)
    theirs = api.call("GET", "/v1/pools/seats", "acme-viewer", params={"member": "u2"}).json()
    assert theirs["available"] == 0
    for other in ("plan", "day"):  # only the per-user pool counts the calls below
        assert api.call("DELETE", f"/v1/budgets/{other}", "acme-admin").status_code == 204
    assert authorize(api, "r1", 400).status_code == 200  # u1: 100 allowance + 300 of the grant
    assert authorize(api, "r2", 400, ACME | {"user": "u2"}).status_code == 402


def test_a_refusal_over_a_pool_says_credits_exhausted(api: Api) -> None:
    grant(api, 50, id="paid")
    granted = authorize(api, "r1", 120)  # the month's 100, then 20 of the grant
    assert granted.status_code == 200, granted.text
    [view] = granted.json()["budgets"]
    assert (view["credit"]["available"], view["credit"]["debt"]) == (30, 0)
    assert view["credit"]["drawn"] == [{"grant_id": "paid", "amount": 20}]
    assert (view["extra_credit"]["active"], view["warning"]) == (True, True)
    schemas.DecisionOut.model_validate(granted.json())
    refused = authorize(api, "r2", 31)
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert (error["code"], error["pool"], error["budget_id"], error["reason"]) == (
        "credits_exhausted", "plan", "plan", "credits_exhausted")  # fmt: skip
    assert (error["remaining"], error["limit"], error["unit"]) == (30, 100, "tokens")
    assert "credit" in error["message"] and error["resets_at"] == "2026-12-01T00:00:00+00:00"
    assert error["decision"]["budgets"][0]["credit"]["display"] == {"available": "30", "debt": "0"}
    schemas.RefusalBody.model_validate(refused.json())
    status = api.call("GET", "/v1/status", "acme-viewer", params={"user": "u1"}).json()
    assert status["budgets"][0]["credit"]["available"] == 30
    schemas.StatusOut.model_validate(status)
    client = api.call("GET", "/v1/status", "acme-viewer", params={"user": "u1", "view": "client"})
    [seen] = client.json()["budgets"]
    assert "credit" not in seen and seen["extra_credit"]["active"] and seen["warning"]


def test_commit_past_the_grants_runs_into_debt_the_next_grant_repays(api: Api) -> None:
    grant(api, 10, id="a")
    assert authorize(api, "r1", 10).status_code == 200
    commit = {"request_id": "r1", "usage": {"output_tokens": 130}}
    assert api.call("POST", "/v1/commit", "acme-service", json=commit).status_code == 200
    pool = api.call("GET", "/v1/pools/plan", "acme-viewer").json()
    assert (pool["available"], pool["debt"], pool["display"]) == (
        0, 20, {"available": "0", "debt": "20"})  # fmt: skip
    schemas.PoolOut.model_validate(pool)
    grant(api, 50, id="b")
    pool = api.call("GET", "/v1/pools/plan", "acme-viewer").json()
    assert (pool["available"], pool["debt"]) == (30, 0)
    row = next(g for g in pool["grants"] if g["id"] == "b")
    assert (row["used"], row["reserved"], row["available"]) == (20, 0, 30)
    assert row["display"] == {"amount": "50", "used": "20", "reserved": "0", "available": "30"}


def test_a_voided_grant_is_gone_and_voiding_twice_changes_nothing(api: Api) -> None:
    grant(api, 40, id="a")
    voided = api.call("POST", "/v1/pools/plan/grants/a/void", "acme-admin", json={})
    assert voided.status_code == 200 and voided.json()["voided_at"] is not None
    schemas.GrantOut.model_validate(voided.json())
    again = api.call("POST", "/v1/pools/plan/grants/a/void", "acme-admin")  # no body at all
    assert again.status_code == 200 and again.json() == voided.json()
    missing = api.call("POST", "/v1/pools/plan/grants/zz/void", "acme-admin", json={})
    assert missing.status_code == 404
    pool = api.call("GET", "/v1/pools/plan", "acme-viewer").json()
    assert pool["available"] == 0 and pool["grants"][0]["voided_at"] is not None
    kinds = [
        e["kind"] for e in api.call("GET", "/v1/pools/plan/ledger", "acme-viewer").json()["entries"]
    ]
    assert kinds == ["grant", "void"]


def test_the_credit_ledger_pages_by_entry_id(api: Api) -> None:
    for i in range(3):
        grant(api, 10 * (i + 1), id=f"g{i}")
    page = api.call("GET", "/v1/pools/plan/ledger", "acme-viewer", params={"limit": 2}).json()
    schemas.CreditPage.model_validate(page)
    assert [(e["kind"], e["grant_id"], e["amount"], e["balance"]) for e in page["entries"]] == [
        ("grant", "g0", 10, 10), ("grant", "g1", 20, 30)]  # fmt: skip
    assert page["entries"][0]["display"] == {"amount": "10", "balance": "10"}
    after = page["next_after_id"]
    rest = api.call("GET", "/v1/pools/plan/ledger", "acme-viewer", params={"after_id": after})
    assert [e["grant_id"] for e in rest.json()["entries"]] == ["g2"]
    assert rest.json()["next_after_id"] is None
    bad = api.call("GET", "/v1/pools/plan/ledger", "acme-viewer", params={"limit": 0})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"


@pytest.mark.parametrize(
    ("role", "writes", "reads"),
    [
        ("admin", 201, 200),
        ("acme-admin", 201, 200),
        ("acme-service", 403, 403),
        ("acme-viewer", 403, 200),
        ("globex-admin", 404, 404),
        ("globex-service", 403, 403),
        ("globex-viewer", 403, 404),
    ],
)
def test_who_may_add_void_and_read(api: Api, role: str, writes: int, reads: int) -> None:
    grant(api, 10, id="a")
    added = api.call("POST", GRANTS, role, json={"amount": 1, "id": "b"})
    assert added.status_code == writes, added.text
    voided = api.call("POST", "/v1/pools/plan/grants/a/void", role, json={})
    assert voided.status_code == (200 if writes == 201 else writes)
    for path in ("/v1/pools/plan", "/v1/pools/plan/ledger"):
        assert api.call("GET", path, role).status_code == reads
    named = api.call("GET", "/v1/pools/plan", role, params={"tenant": "acme"})
    assert named.status_code == (403 if role.startswith("globex") else reads)
    if writes != 201:  # nothing changed
        pool = api.call("GET", "/v1/pools/plan", "acme-viewer").json()
        assert [(g["id"], g["voided_at"]) for g in pool["grants"]] == [("a", None)]


def test_another_tenant_never_learns_of_a_pool(api: Api) -> None:
    """globex has a pool with the same id: each tenant's key reaches its own only."""
    theirs = POOL | {"tenant": "globex", "limit": 0}
    assert api.call("POST", "/v1/budgets", "globex-admin", json=theirs).status_code == 201
    grant(api, 10, id="acme-grant")
    grant(api, 99, key="globex-admin", id="globex-grant")
    mine = api.call("GET", "/v1/pools/plan", "globex-viewer").json()
    assert [g["id"] for g in mine["grants"]] == ["globex-grant"] and mine["tenant"] == "globex"
    ledger = api.call("GET", "/v1/pools/plan/ledger", "globex-viewer").json()["entries"]
    assert [e["grant_id"] for e in ledger] == ["globex-grant"]
    void = api.call("POST", "/v1/pools/plan/grants/acme-grant/void", "globex-admin", json={})
    assert void.status_code == 404
    ambiguous = api.call("GET", "/v1/pools/plan", "admin")
    assert ambiguous.status_code == 422 and ambiguous.json()["error"]["field"] == "tenant"
    named = api.call("GET", "/v1/pools/plan", "admin", params={"tenant": "acme"}).json()
    assert [g["id"] for g in named["grants"]] == ["acme-grant"]


def test_a_deployment_wide_pool_is_admins_to_grant(api: Api) -> None:
    wide = POOL | {"id": "shared", "tenant": None, "per": "tenant", "limit": 0}
    assert api.call("POST", "/v1/budgets", "admin", json=wide).status_code == 201
    path = "/v1/pools/shared/grants"
    denied = api.call("POST", path, "acme-admin", json={"amount": 5, "member": "acme"})
    assert denied.status_code == 403
    for member, amount in (("acme", 5), ("globex", 7)):
        made = api.call("POST", path, "admin", json={"amount": amount, "member": member})
        assert made.status_code == 201
    own = api.call("GET", "/v1/pools/shared", "acme-viewer").json()  # its own member
    assert (own["member"], own["available"]) == ("acme", 5)
    other = api.call("GET", "/v1/pools/shared", "acme-viewer", params={"member": "globex"})
    assert other.status_code == 404
    ledger = api.call("GET", "/v1/pools/shared/ledger", "acme-viewer").json()["entries"]
    assert {e["member"] for e in ledger} == {"acme"}
    assert api.call("GET", "/v1/pools/shared", "admin", params={"member": "globex"}).json()[
        "available"] == 7  # fmt: skip
    mixed = POOL | {"id": "common", "tenant": None, "limit": 0}
    assert api.call("POST", "/v1/budgets", "admin", json=mixed).status_code == 201
    assert api.call("GET", "/v1/pools/common", "acme-viewer").status_code == 403


def test_a_cost_pool_answers_in_micros_with_its_currency(api: Api) -> None:
    cost = {"id": "usd", "tenant": "acme", "meter": "cost", "window": "month", "limit": "1.00",
            "credits": True}  # fmt: skip
    assert api.call("POST", "/v1/budgets", "acme-admin", json=cost).status_code == 201
    made = api.call("POST", "/v1/pools/usd/grants", "acme-admin", json={"amount": "12.50"})
    body = made.json()
    assert (body["amount"], body["unit"], body["currency"], body["display"]) == (
        12_500_000, "micros", "USD", {"amount": "12.50"})  # fmt: skip
    pool = api.call("GET", "/v1/pools/usd", "acme-viewer").json()
    assert (pool["meter"], pool["display"]["available"]) == ("cost", "12.50")


def test_the_openapi_document_lists_the_pool_endpoints(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    grants = paths["/v1/pools/{pool_id}/grants"]["post"]
    assert {"200", "201", "409", "422"} <= set(grants["responses"])
    assert "/v1/pools/{pool_id}/grants/{grant_id}/void" in paths
    assert "get" in paths["/v1/pools/{pool_id}"] and "get" in paths["/v1/pools/{pool_id}/ledger"]
    resume = paths["/v1/pools/{pool_id}/topups/resume"]["post"]
    assert {"200", "403", "404", "422"} <= set(resume["responses"])
    refused = paths["/v1/authorize"]["post"]["responses"]["402"]
    assert "credits_exhausted" in refused["description"]


def test_a_replay_later_in_real_time_is_still_the_same_grant() -> None:
    gov = Governor("memory://")  # a real clock: the replay comes a moment later
    _, admin = gov.create_key("admin")
    gov.create_budget(POOL)
    client = TestClient(create_app(gov))
    headers = {"Authorization": f"Bearer {admin}"}
    body = {"amount": 5, "tenant": "acme", "idempotency_key": "pay_9"}
    assert client.post(GRANTS, headers=headers, json=body).status_code == 201
    assert client.post(GRANTS, headers=headers, json=body).status_code == 200


# --- auto top-up ----------------------------------------------------------------------------

#: 0 tokens a month: grants only, topped up by 50 below 20, at most 100 a month
TOPPED = POOL | {"id": "topped", "per": "user", "limit": 0,
                 "auto_topup": {"threshold": 20, "amount": 50, "monthly_cap": 100}}  # fmt: skip
U1 = {"tenant": "acme", "member": "u1"}


@pytest.fixture
def topping(make_governor: Callable[..., Governor]) -> tuple[Api, Governor, TestGateway]:
    gateway = TestGateway(outcome="failed")
    gov: Governor = make_governor(gateway=gateway, topup_worker=False)
    api = Api(gov)
    assert api.call("POST", "/v1/budgets", "acme-admin", json=TOPPED).status_code == 201
    assert api.call("POST", "/v1/pools/topped/grants", "acme-admin",
                    json={"amount": 30, "member": "u1"}).status_code == 201  # fmt: skip
    return api, gov, gateway


def auto_topup(api: Api, key: str = "acme-viewer") -> Any:
    pool = api.call("GET", "/v1/pools/topped", key, params={"member": "u1"}).json()
    schemas.PoolOut.model_validate(pool)
    return pool["auto_topup"]


def spend(api: Api, rid: str, tokens: int) -> None:
    assert authorize(api, rid, tokens).status_code == 200
    commit = {"request_id": rid, "usage": {"output_tokens": tokens}}
    assert api.call("POST", "/v1/commit", "acme-service", json=commit).status_code == 200


def test_a_pool_shows_its_auto_topup_and_the_latest_top_up(
    topping: tuple[Api, Governor, TestGateway],
) -> None:
    api, gov, _ = topping
    assert auto_topup(api) == {"threshold": 20, "amount": 50, "target": None,
                               "monthly_cap": 100, "status": None, "latest": None}  # fmt: skip
    spend(api, "r1", 15)  # 15 left: below 20, one top-up starts
    pending = auto_topup(api)
    assert pending["status"] is None
    assert (pending["latest"]["amount"], pending["latest"]["state"]) == (50, "pending")
    [failed] = gov.run_topups()
    shown = auto_topup(api)
    assert shown["status"] == "auto_topup_failed"
    assert shown["latest"] == failed.to_dict() | {"state": "failed"}
    assert shown["latest"]["error"] == "test gateway: failed"
    assert gov.topup_status("topped", tenant="acme", member="u1") == ("auto_topup_failed", failed)
    ledger = api.call("GET", "/v1/pools/topped/ledger", "acme-viewer").json()
    schemas.CreditPage.model_validate(ledger)
    kinds = [e["kind"] for e in ledger["entries"]]
    assert kinds[0] == "grant" and kinds[-2:] == ["topup_started", "topup_failed"]


def test_auto_topup_is_resumed_by_keys_that_may_change_the_pool(
    topping: tuple[Api, Governor, TestGateway], clock: Clock
) -> None:
    api, gov, gateway = topping
    path = "/v1/pools/topped/topups/resume"
    nothing = api.call("POST", path, "acme-admin", json={"member": "u1"})
    assert nothing.status_code == 200 and nothing.json() == {"resumed": False}  # not paused
    spend(api, "r1", 15)
    gov.run_topups()
    for key, code in (("acme-viewer", 403), ("acme-service", 403), ("globex-admin", 404)):
        assert api.call("POST", path, key, json={"member": "u1"}).status_code == code, key
    assert auto_topup(api)["status"] == "auto_topup_failed"  # nothing changed
    unnamed = api.call("POST", path, "acme-admin")  # no body: the pool is per user
    assert unnamed.status_code == 422 and unnamed.json()["error"]["field"] == "member"
    resumed = api.call("POST", path, "acme-admin", json=U1)
    assert resumed.status_code == 200 and resumed.json() == {"resumed": True}
    schemas.ResumedOut.model_validate(resumed.json())
    assert api.call("POST", path, "admin", json=U1).json() == {"resumed": False}
    shown = auto_topup(api)
    assert (shown["status"], shown["latest"]["state"]) == (None, "resumed")
    gateway.outcome = "succeeded"
    clock.advance(seconds=1)  # the latest top-up is the one started last
    spend(api, "r2", 1)  # still below the threshold: a new top-up starts and is paid
    [paid] = gov.run_topups()
    assert auto_topup(api)["latest"]["grant_id"] == paid.grant_id is not None
    plain = {"id": "day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 9}
    assert api.call("POST", "/v1/budgets", "acme-admin", json=plain).status_code == 201
    not_a_pool = api.call("POST", "/v1/pools/day/topups/resume", "acme-admin", json={})
    assert not_a_pool.status_code == 422 and not_a_pool.json()["error"]["field"] == "pool"
    assert api.call("POST", "/v1/pools/nope/topups/resume", "acme-admin").status_code == 404


def test_grants_layer_on_a_plans_pool(api: Api) -> None:
    """A plan's template with ``credits: true`` is a pool: ``<plan>.<template id>``."""
    credits = {"id": "credits", "meter": "tokens", "window": "lifetime", "limit": 10,
               "credits": True}  # fmt: skip
    tiers = {"per": "user", "default": True, "budgets": [credits]}
    assert api.call("PUT", "/v1/plans/core", "acme-admin", json=tiers).status_code == 200
    path = "/v1/pools/core.credits/grants"
    added = api.call("POST", path, "acme-admin", json={"amount": 30, "member": "u1"})
    assert added.status_code == 201, added.text
    shown = api.call("GET", "/v1/pools/core.credits?member=u1", "acme-admin").json()
    assert (shown["available"], shown["pool"]) == (30, "core.credits")
    assert authorize(api, "r1", 40).status_code == 200  # the plan's 10, then 30 bought
