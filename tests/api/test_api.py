"""The v1 API in-process (ASGI, the real app and store), on every backend."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app, schemas
from allotment.governor import Governor

ACME = {"tenant": "acme", "user": "u1", "feature": "chat"}
BUDGET = {"id": "acme-day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 1000}


class Api:
    """A client with named keys of each role and tenant."""

    def __init__(self, gov: Governor) -> None:
        self.client = TestClient(create_app(gov))
        self.keys: dict[str, str] = {}
        for name, role, tenant in [
            ("admin", "admin", None),
            ("acme-admin", "tenant_admin", "acme"),
            ("acme-service", "service", "acme"),
            ("acme-viewer", "viewer", "acme"),
            ("globex-admin", "tenant_admin", "globex"),
            ("globex-service", "service", "globex"),
            ("globex-viewer", "viewer", "globex"),
        ]:
            self.keys[name] = gov.create_key(role, tenant, name)[1]

    def call(self, method: str, path: str, key: str | None, **kwargs: Any) -> Any:
        headers = {} if key is None else {"Authorization": f"Bearer {self.keys.get(key, key)}"}
        return self.client.request(method, path, headers=headers, **kwargs)

    def add_budgets(self, *specs: dict[str, Any], key: str = "acme-admin") -> None:
        """Create each budget of ``specs`` through the API."""
        for spec in specs:
            made = self.call("POST", "/v1/budgets", key, json=spec)
            assert made.status_code == 201, made.text


@pytest.fixture
def api(make_governor: Callable[..., Governor]) -> Api:
    gov: Governor = make_governor()
    api = Api(gov)
    assert api.call("POST", "/v1/budgets", "acme-admin", json=BUDGET).status_code == 201
    return api


def authorize(api: Api, rid: str, tokens: int, key: str = "acme-service") -> Any:
    body = {"request_id": rid, "subject": ACME, "provider": "openai", "model": "gpt-4o-mini",
            "estimate": {"output_tokens": tokens}}  # fmt: skip
    return api.call("POST", "/v1/authorize", key, json=body)


def test_the_call_lifecycle(api: Api) -> None:
    granted = authorize(api, "r1", 300)
    assert granted.status_code == 200 and granted.json()["allowed"]
    assert granted.headers["X-Budget-Remaining"] == "700"
    assert granted.headers["X-Budget-Id"] == "acme-day"
    assert "X-Request-Id" in granted.headers
    usage = {"input_tokens": 500, "output_tokens": 200}
    committed = api.call("POST", "/v1/commit", "acme-service",
                         json={"request_id": "r1", "usage": usage})  # fmt: skip
    assert committed.status_code == 200
    assert committed.json()["adjustments"][0]["difference"] == -400  # overshoot reported
    refused = authorize(api, "r2", 301)
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert (error["code"], error["budget_id"], error["reason"], error["remaining"]) == (
        "budget_exceeded", "acme-day", "estimate_exceeds_remaining", 300,
    )  # fmt: skip
    assert error["resets_at"] and "budget" in error["message"]
    assert authorize(api, "r3", 300).status_code == 200
    released = api.call("POST", "/v1/release", "acme-service", json={"request_id": "r3"})
    assert released.json() == {"request_id": "r3", "state": "released"}
    # the success shapes Schemathesis cannot reach (it never knows a live request id)
    schemas.DecisionOut.model_validate(granted.json())
    schemas.CommitOut.model_validate(committed.json())
    schemas.ErrorBody.model_validate(refused.json())
    schemas.ReleaseOut.model_validate(released.json())


def test_status_usage_and_ledger(api: Api) -> None:
    events = [{"request_id": f"e{i}", "subject": ACME | {"feature": f"f{i % 2}"},
               "provider": "openai", "model": "gpt-4o-mini", "usage": {"input_tokens": 100}}
              for i in range(5)]  # fmt: skip
    posted = api.call("POST", "/v1/events", "acme-service", json={"events": events})
    assert posted.status_code == 200
    schemas.CommitsOut.model_validate(posted.json())
    status = api.call("GET", "/v1/status", "acme-service", params={"user": "u1"}).json()
    assert status["budgets"][0]["used"] == 500 and status["budgets"][0]["state"] == "within_budget"
    client_view = api.call("GET", "/v1/status", "acme-viewer", params={"view": "client"}).json()
    assert set(client_view["budgets"][0]) == {
        "budget_id", "name", "meter", "percent", "percent_available", "state", "resets_at",
    }  # fmt: skip
    rows = api.call("GET", "/v1/usage", "acme-viewer", params={"by": "feature"}).json()["rows"]
    assert {r["group"]["feature"]: r["calls"] for r in rows} == {"f0": 3, "f1": 2}
    page = api.call("GET", "/v1/events", "acme-viewer", params={"limit": 2}).json()
    rest = api.call("GET", "/v1/events", "acme-viewer",
                    params={"cursor": page["next_cursor"]}).json()  # fmt: skip
    assert [e["request_id"] for e in page["events"] + rest["events"]] == [f"e{i}" for i in range(5)]
    exported = api.call("GET", "/v1/events", "acme-viewer", params={"format": "csv"})
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert exported.headers["content-type"].startswith("text/csv") and len(table) == 5
    assert table[0]["cost_micros"] == "15"  # 100 gpt-4o-mini input tokens at $0.15/M


def test_errors_name_the_field(api: Api) -> None:
    bad = authorize(api, "r1", -5)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "estimate.output_tokens"
    shape = api.call("POST", "/v1/authorize", "acme-service", json={"request_id": "x"})
    assert shape.status_code == 422 and shape.json()["error"]["field"] == "subject"
    authorize(api, "r2", 10)
    conflict = authorize(api, "r2", 11)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    missing = api.call("POST", "/v1/commit", "acme-service",
                       json={"request_id": "nope", "usage": {}})  # fmt: skip
    assert missing.status_code == 404
    budget = api.call("POST", "/v1/budgets", "acme-admin", json=BUDGET | {"id": "x", "meter": "?"})
    assert budget.status_code == 422 and budget.json()["error"]["field"] == "meter"


def test_keys(api: Api) -> None:
    assert api.call("GET", "/healthz", None).json() == {"status": "ok"}
    assert api.call("GET", "/readyz", None).status_code == 200
    assert api.call("GET", "/v1/status", None).status_code == 401
    assert api.call("GET", "/v1/status", "ak_000000000000_nope").status_code == 401
    made = api.call("POST", "/v1/keys", "acme-admin", json={"role": "service", "name": "bot"})
    assert made.status_code == 201 and made.json()["tenant"] == "acme"
    secret, key_id = made.json()["secret"], made.json()["id"]
    schemas.KeyOut.model_validate(made.json())
    listed = api.call("GET", "/v1/keys", "acme-admin").json()["keys"]
    assert key_id in [k["id"] for k in listed] and "secret" not in listed[0]
    assert {k["tenant"] for k in listed} == {"acme"}
    assert api.call("GET", "/v1/status", secret).status_code == 200
    assert api.call("DELETE", f"/v1/keys/{key_id}", "acme-admin").status_code == 204
    assert api.call("GET", "/v1/status", secret).status_code == 401
    escalate = api.call("POST", "/v1/keys", "acme-admin", json={"role": "admin"})
    assert escalate.status_code == 403


# Every endpoint a key of tenant globex might try against tenant acme.
CROSS_TENANT: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/authorize", {"json": {"request_id": "x1", "subject": ACME, "provider": "o",
                                        "model": "m"}}),
    ("POST", "/v1/commit", {"json": {"request_id": "held", "usage": {"input_tokens": 1}}}),
    ("POST", "/v1/commit", {"json": {"request_id": "x2", "usage": {}, "subject": ACME,
                                     "provider": "o", "model": "m"}}),
    ("POST", "/v1/release", {"json": {"request_id": "held"}}),
    ("POST", "/v1/events", {"json": {"events": [{"request_id": "x3", "subject": ACME,
                                                 "provider": "o", "model": "m", "usage": {}}]}}),
    ("GET", "/v1/status", {"params": {"tenant": "acme"}}),
    ("GET", "/v1/usage", {"params": {"tenant": "acme"}}),
    ("GET", "/v1/events", {"params": {"tenant": "acme"}}),
    ("GET", "/v1/budgets", {"params": {"tenant": "acme"}}),
    ("GET", "/v1/budgets/acme-day", {}),
    ("PATCH", "/v1/budgets/acme-day", {"json": {"limit": 1}}),
    ("DELETE", "/v1/budgets/acme-day", {}),
    ("POST", "/v1/budgets", {"json": BUDGET | {"id": "evil"}}),
    ("GET", "/v1/keys", {"params": {"tenant": "acme"}}),
    ("POST", "/v1/keys", {"json": {"role": "service", "tenant": "acme"}}),
]  # fmt: skip


@pytest.mark.parametrize("role", ["globex-admin", "globex-service", "globex-viewer"])
def test_no_key_of_one_tenant_reaches_another(api: Api, role: str) -> None:
    assert authorize(api, "held", 100).status_code == 200
    before = api.call("GET", "/v1/events", "admin", params={"tenant": "acme"}).json()
    for method, path, kwargs in CROSS_TENANT:
        response = api.call(method, path, role, **kwargs)
        assert response.status_code in (403, 404), (role, method, path, response.text)
    status = api.call("GET", "/v1/status", "acme-viewer").json()["budgets"][0]
    assert (status["used"], status["reserved"], status["limit"]) == (0, 100, 1000)
    after = api.call("GET", "/v1/events", "admin", params={"tenant": "acme"}).json()
    assert after == before
    assert api.call("GET", "/v1/budgets/acme-day", "admin").json()["limit"] == "1000"
    if role != "globex-admin":  # a globex admin may see globex keys, never acme's
        return
    keys = api.call("GET", "/v1/keys", role).json()["keys"]
    assert {k["tenant"] for k in keys} == {"globex"}


def test_tenants_may_use_the_same_request_id(api: Api) -> None:
    """Another tenant's request id is neither visible nor blocking (no 409 across tenants)."""
    globex = {"tenant": "globex", "user": "g1"}
    assert authorize(api, "job-1", 100).status_code == 200
    body = {"request_id": "job-1", "subject": globex, "provider": "openai",
            "model": "gpt-4o-mini", "estimate": {"output_tokens": 7}}  # fmt: skip
    theirs = api.call("POST", "/v1/authorize", "globex-service", json=body)
    assert theirs.status_code == 200 and not theirs.json()["replayed"]
    commit = {"request_id": "job-1", "usage": {"output_tokens": 5}}
    committed = api.call("POST", "/v1/commit", "globex-service", json=commit)
    assert committed.json()["event"]["subject"]["tenant"] == "globex"
    status = api.call("GET", "/v1/status", "acme-viewer").json()["budgets"][0]
    assert (status["used"], status["reserved"]) == (0, 100)
    # an admin, acting for every tenant, must say whose id it means
    ambiguous = api.call("POST", "/v1/release", "admin", json={"request_id": "job-1"})
    assert ambiguous.status_code == 422 and "tenant" in ambiguous.text
    named = {"request_id": "job-1", "tenant": "acme"}
    assert api.call("POST", "/v1/release", "globex-service", json=named).status_code == 403
    released = api.call("POST", "/v1/release", "admin", json=named)
    assert released.json()["state"] == "released"
    status = api.call("GET", "/v1/status", "acme-viewer").json()["budgets"][0]
    assert (status["used"], status["reserved"]) == (0, 0)
    event = {"request_id": "job-2", "subject": globex, "provider": "o", "model": "m",
             "usage": {"input_tokens": 1}}  # fmt: skip
    assert authorize(api, "job-2", 1).status_code == 200
    ingested = api.call("POST", "/v1/events", "globex-service", json={"events": [event]})
    assert ingested.status_code == 200, ingested.text


def test_budget_ids_are_scoped_by_tenant(api: Api) -> None:
    """A tenant admin taking an id another tenant uses neither conflicts with it nor
    learns that it exists; each tenant reads, changes and deletes only its own."""
    created = api.call(
        "POST", "/v1/budgets", "globex-admin", json=BUDGET | {"tenant": None, "limit": 5}
    )
    assert created.status_code == 201, created.text
    assert created.json()["tenant"] == "globex"
    assert api.call("GET", "/v1/budgets/acme-day", "globex-viewer").json()["limit"] == "5"
    assert api.call("GET", "/v1/budgets/acme-day", "acme-viewer").json()["limit"] == "1000"
    other = api.call("GET", "/v1/budgets/acme-day", "globex-viewer", params={"tenant": "acme"})
    assert other.status_code == 403
    ambiguous = api.call("GET", "/v1/budgets/acme-day", "admin")
    assert ambiguous.status_code == 422 and ambiguous.json()["error"]["field"] == "tenant"
    named = api.call("GET", "/v1/budgets/acme-day", "admin", params={"tenant": "globex"})
    assert named.json()["limit"] == "5"
    patched = api.call("PATCH", "/v1/budgets/acme-day", "globex-admin", json={"limit": 7})
    assert patched.json()["limit"] == "7" and patched.json()["tenant"] == "globex"
    moved = api.call("PATCH", "/v1/budgets/acme-day", "globex-admin", json={"tenant": "acme"})
    assert moved.status_code == 422 and moved.json()["error"]["field"] == "tenant"
    body = {"request_id": "g", "subject": {"tenant": "globex"}, "provider": "openai",
            "model": "gpt-4o-mini", "estimate": {"output_tokens": 8}}  # fmt: skip
    refused = api.call("POST", "/v1/authorize", "globex-service", json=body)
    assert refused.status_code == 402 and refused.json()["error"]["limit"] == 7
    assert authorize(api, "a", 8).status_code == 200  # acme's own 1000 tokens
    gone = api.call("DELETE", "/v1/budgets/acme-day", "globex-admin")
    assert gone.status_code == 204
    assert api.call("GET", "/v1/budgets/acme-day", "globex-viewer").status_code == 404
    assert api.call("GET", "/v1/budgets/acme-day", "admin").json()["tenant"] == "acme"
    wide = api.call("POST", "/v1/budgets", "admin", json=BUDGET | {"tenant": None})
    assert wide.status_code == 409  # a tenant budget has the id: not deployment-wide too


@pytest.mark.parametrize(
    ("role", "method", "path", "allowed"),
    [
        ("acme-viewer", "POST", "/v1/authorize", False),
        ("acme-viewer", "GET", "/v1/events", True),
        ("acme-service", "GET", "/v1/events", False),
        ("acme-service", "GET", "/v1/status", True),
        ("acme-service", "POST", "/v1/budgets", False),
        ("acme-viewer", "DELETE", "/v1/budgets/acme-day", False),
    ],
)
def test_roles(api: Api, role: str, method: str, path: str, allowed: bool) -> None:
    kwargs: dict[str, Any] = {}
    if path == "/v1/authorize":
        kwargs["json"] = {"request_id": "r", "subject": ACME, "provider": "o", "model": "m"}
    if path == "/v1/budgets" and method == "POST":
        kwargs["json"] = BUDGET | {"id": "b2"}
    response = api.call(method, path, role, **kwargs)
    assert (response.status_code < 400) is allowed, response.text
    if not allowed:
        assert response.status_code == 403


def test_admin_must_name_the_tenant_and_sees_all(api: Api) -> None:
    assert api.call("GET", "/v1/status", "admin").status_code == 422
    ok = api.call("GET", "/v1/status", "admin", params={"tenant": "acme"})
    assert ok.status_code == 200 and ok.json()["budgets"][0]["budget_id"] == "acme-day"
    prices = api.call("GET", "/v1/prices", "acme-viewer",
                      params={"provider": "openai", "model": "gpt-4o-mini"}).json()  # fmt: skip
    assert (prices["source"], prices["amount_micros"]) == ("catalog", 750_000)


def test_openapi_lists_the_contract(api: Api) -> None:
    paths = api.call("GET", "/openapi.json", None).json()["paths"]
    for path in ("/v1/authorize", "/v1/commit", "/v1/release", "/v1/events", "/v1/status",
                 "/v1/usage", "/v1/budgets", "/v1/budgets/{budget_id}", "/v1/keys",
                 "/v1/keys/{key_id}", "/v1/prices", "/healthz", "/readyz"):  # fmt: skip
        assert path in paths, path


def test_metrics(api: Api) -> None:
    authorize(api, "m1", 100)
    authorize(api, "m2", 5000)
    text = api.call("GET", "/metrics", None).text
    assert 'allotment_decisions_total{outcome="allowed",reason=""}' in text
    assert (
        'allotment_decisions_total{outcome="refused",reason="estimate_exceeds_remaining"}' in text
    )
    assert (
        'allotment_request_duration_seconds_bucket{le="0.001",method="POST",route="/v1/authorize"}'
        in text
    )
    assert "allotment_reservations_in_flight 1" in text


def test_a_budgets_file_applies_over_http_all_or_nothing(api: Api) -> None:
    """``POST /v1/config``: a file's rates, then its budgets, in one transaction."""
    rate = {"source": "USD", "target": "EUR", "rate": "0.92",
            "effective_from": "2026-01-01T00:00:00Z"}  # fmt: skip
    eur = {"id": "eur-day", "tenant": "acme", "meter": "cost", "currency": "EUR",
           "window": "day", "limit": "2.00"}  # fmt: skip
    broken = {"budgets": [eur, BUDGET | {"id": "bad", "window": "fortnight"}], "rates": [rate]}
    refused = api.call("POST", "/v1/config", "admin", json=broken)
    assert (
        refused.status_code == 422 and refused.json()["error"]["field"] == "budgets[1].window.kind"
    )
    assert api.call("GET", "/v1/rates", "admin").json() == {"rates": []}  # nothing written
    no_rate = api.call("POST", "/v1/config", "admin", json={"budgets": [eur]})
    assert no_rate.status_code == 422 and "rate" in no_rate.text
    for key, body, status in (
        ("acme-admin", {"budgets": [eur], "rates": [rate]}, 403),  # rates are deployment-wide
        ("acme-admin", {"budgets": [eur | {"tenant": "globex"}]}, 403),
        ("acme-viewer", {"budgets": [eur]}, 403),
        ("admin", {"budgets": [eur], "colour": "red"}, 422),
        ("admin", {"budgets": {"id": "x"}}, 422),
        ("admin", {"budgets": [7]}, 422),
    ):
        assert api.call("POST", "/v1/config", key, json=body).status_code == status, body
    applied = api.call("POST", "/v1/config", "admin", json={"budgets": [eur], "rates": [rate]})
    assert applied.status_code == 200, applied.text
    assert [b["id"] for b in applied.json()["budgets"]] == ["eur-day"]
    assert api.call("GET", "/v1/rates", "acme-viewer").json()["rates"] == [
        rate | {"effective_from": "2026-01-01T00:00:00+00:00"}
    ]
    mine = api.call("POST", "/v1/config", "acme-admin",
                    json={"budgets": [eur | {"tenant": None, "limit": "3.00"}]})  # fmt: skip
    [budget] = mine.json()["budgets"]
    assert (budget["tenant"], budget["display"]["limit"]) == ("acme", "3.00")


def test_exchange_rates_over_http(api: Api) -> None:
    body = {"source": "USD", "target": "GBP", "rate": "0.79"}
    assert api.call("POST", "/v1/rates", "acme-admin", json=body).status_code == 403
    created = api.call("POST", "/v1/rates", "admin", json=body)
    assert created.status_code == 201 and created.json()["rate"] == "0.79"
    for bad, field in (({**body, "rate": "-1"}, "rate"), ({**body, "target": "usd"}, "target"),
                       ({**body, "colour": 1}, "colour"),
                       ({**body, "effective_from": "soon"}, "effective_from")):  # fmt: skip
        refused = api.call("POST", "/v1/rates", "admin", json=bad)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field, bad
    assert [r["target"] for r in api.call("GET", "/v1/rates", "acme-viewer").json()["rates"]] == [
        "GBP"
    ]
