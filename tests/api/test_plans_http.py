"""Plans over HTTP (the real app and store, on every backend): plans set, read and
deleted, members assigned, who may do each, the errors naming their field, and
plans in ``POST /v1/config``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from allotment.api import schemas
from allotment.governor import Governor
from tests.api.test_api import Api

# fmt: off
CORE = {"tenant": "relay", "per": "install", "default": True,
        "budgets": [{"id": "credits", "meter": "credits", "window": "lifetime", "limit": 100}]}
PRO = {"tenant": "relay", "per": "install",
       "budgets": [{"id": "credits", "meter": "credits", "window": "month", "limit": 1000}]}
#: deployment-wide: every tenant may put its members on it
FREE = {"per": "install",
        "budgets": [{"id": "credits", "meter": "credits", "window": "day", "limit": 5}]}
# fmt: on
INSTALL = {"tenant": "relay", "install": "i-1"}


class Relay(Api):
    """``Api``'s keys, and relay's: an admin, a service and a viewer."""

    def __init__(self, gov: Governor) -> None:
        super().__init__(gov)
        for role in ("tenant_admin", "service", "viewer"):
            self.keys[f"relay-{role}"] = gov.create_key(role, "relay")[1]

    def put(self, plan_id: str, body: dict[str, Any], key: str = "relay-tenant_admin") -> Any:
        return self.call("PUT", f"/v1/plans/{plan_id}", key, json=body)

    def assign(self, member: str, plan: str, key: str = "relay-tenant_admin", **more: Any) -> Any:
        body = {"member": member, "plan": plan, **more}
        return self.call("PUT", "/v1/plans/assignments", key, json=body)


@pytest.fixture
def api(make_governor: Callable[..., Governor]) -> Relay:
    return Relay(make_governor())


def test_plans_are_set_versioned_read_and_deleted(api: Relay) -> None:
    made = api.put("core", CORE)
    assert made.status_code == 200, made.text
    body = made.json()
    schemas.PlanOut.model_validate(body)
    assert (body["id"], body["tenant"], body["version"], body["key"]) == (
        "core", "relay", 1, "relay#core")  # fmt: skip
    assert body["budgets"][0]["id"] == "credits" and body["budgets"][0]["limit"] == "100"
    pro = api.put("pro", PRO | {"id": "pro"}).json()
    assert pro["version"] == 1
    bigger = [pro["budgets"][0] | {"limit": "1500"}]
    changed = api.put("pro", pro | {"budgets": bigger})
    assert changed.status_code == 200, changed.text  # an answer sent back, key and all
    assert changed.json()["version"] == 2
    listed = api.call("GET", "/v1/plans", "relay-viewer").json()
    schemas.PlansOut.model_validate(listed)
    assert [(p["id"], p["version"]) for p in listed["plans"]] == [("core", 1), ("pro", 2)]
    one = api.call("GET", "/v1/plans/pro", "relay-viewer").json()
    assert one == changed.json()
    assert api.call("GET", "/v1/plans/pro", "admin", params={"tenant": "relay"}).json() == one
    assert api.call("DELETE", "/v1/plans/pro", "relay-tenant_admin").status_code == 204
    gone = api.call("GET", "/v1/plans/pro", "relay-viewer")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_members_are_assigned_and_run_on_their_plan(api: Relay) -> None:
    api.put("core", CORE)
    api.put("pro", PRO)
    none = api.call("GET", "/v1/plans/assignments", "relay-viewer", params={"member": "i-1"})
    assert none.status_code == 404
    status = api.call("GET", "/v1/status", "relay-viewer", params=INSTALL).json()
    assert [v["budget_id"] for v in status["budgets"]] == ["core.credits"]  # the default
    assigned = api.assign("i-1", "pro")
    assert assigned.status_code == 200, assigned.text
    schemas.AssignmentOut.model_validate(assigned.json())
    fields = ("tenant", "member", "plan", "epoch", "usage")
    assert [assigned.json()[k] for k in fields] == ["relay", "i-1", "pro", 0, "carry"]
    read = api.call("GET", "/v1/plans/assignments", "relay-viewer", params={"member": "i-1"})
    assert read.json() == assigned.json()
    status = api.call("GET", "/v1/status", "relay-service", params=INSTALL).json()
    assert [(v["budget_id"], v["remaining"]) for v in status["budgets"]] == [("pro.credits", 1000)]
    reset = api.assign("i-1", "core", key="admin", tenant="relay", usage="reset")
    assert (reset.json()["plan"], reset.json()["epoch"], reset.json()["usage"]) == (
        "core", 1, "reset")  # fmt: skip


def test_who_may_do_what(api: Relay) -> None:
    api.put("core", CORE)
    wide = api.put("free", FREE, key="admin")
    assert wide.status_code == 200 and wide.json()["tenant"] is None
    # a tenant admin's plan is its tenant's, whatever the body says of no tenant
    assert api.put("team", PRO | {"tenant": None}).json()["tenant"] == "relay"
    for key, status in (("relay-service", 403), ("relay-viewer", 403), ("acme-admin", 403)):
        assert api.put("core", CORE, key=key).status_code == status, key
    refused = api.call("DELETE", "/v1/plans/free", "relay-tenant_admin")
    assert refused.status_code == 403 and "admins only" in refused.json()["error"]["message"]
    # another tenant's plan is not there at all
    assert api.call("GET", "/v1/plans/core", "acme-viewer").status_code == 404
    assert api.call("DELETE", "/v1/plans/core", "acme-admin").status_code == 404
    acme = [p["id"] for p in api.call("GET", "/v1/plans", "acme-viewer").json()["plans"]]
    assert acme == ["free"]
    everyone = api.call("GET", "/v1/plans", "admin").json()["plans"]
    assert sorted(p["key"] for p in everyone) == ["free", "relay#core", "relay#team"]
    assert api.call("GET", "/v1/plans", "relay-service").status_code == 403
    # assigning takes a key that may manage the tenant, and a plan the tenant can see
    assert api.assign("i-1", "free").status_code == 200
    assert api.assign("i-1", "core", key="relay-service").status_code == 403
    assert api.assign("i-1", "core", key="acme-admin").status_code == 404  # acme has no core
    assert api.assign("i-1", "core", key="acme-admin", tenant="relay").status_code == 403
    unnamed = api.assign("i-1", "core", key="admin")
    assert unnamed.status_code == 422 and unnamed.json()["error"]["field"] == "tenant"
    read = api.call("GET", "/v1/plans/assignments", "acme-viewer",
                    params={"member": "i-1", "tenant": "relay"})  # fmt: skip
    assert read.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (PRO | {"id": "other"}, "id"),
        (PRO | {"per": "galaxy"}, "per"),
        (PRO | {"default": True}, "default"),  # core is relay's default already
        (PRO | {"colour": "red"}, "colour"),
        (PRO | {"key": "relay#other"}, "key"),
        (PRO | {"budgets": [{"id": "a.b", "meter": "credits", "window": "day"}]}, "budgets[0].id"),
        (PRO | {"budgets": [PRO["budgets"][0] | {"per": "user"}]}, "budgets[0].per"),
        (PRO | {"budgets": [PRO["budgets"][0] | {"limit": -1}]}, "budgets[0].limit"),
        (
            PRO | {"budgets": [PRO["budgets"][0] | {"window": "fortnight"}]},
            "budgets[0].window.kind",
        ),
        (PRO | {"budgets": [PRO["budgets"][0], PRO["budgets"][0]]}, "budgets[1].id"),
    ],
)
def test_a_bad_plan_is_a_422_naming_the_field(api: Relay, body: dict[str, Any], field: str) -> None:
    api.put("core", CORE)
    answer = api.put("pro", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert api.call("GET", "/v1/plans/pro", "relay-viewer").status_code == 404


def test_conflicts_and_unknown_plans(api: Relay) -> None:
    budget = {"id": "pro.credits", "tenant": "relay", "meter": "credits", "window": "day"}
    assert api.call("POST", "/v1/budgets", "relay-tenant_admin", json=budget).status_code == 201
    taken = api.put("pro", PRO)
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "conflict"
    unknown = api.assign("i-1", "gold")
    assert unknown.status_code == 404
    bad = api.assign("i-1", "pro", usage="forget")
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "usage"
    empty = api.assign("", "core")
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "member"


def test_the_config_applies_plans_with_budgets(api: Relay) -> None:
    budget = {"id": "day", "tenant": "relay", "meter": "tokens", "window": "day", "limit": 9}
    body = {"budgets": [budget], "plans": [CORE | {"id": "core"}, PRO | {"id": "pro"}]}
    applied = api.call("POST", "/v1/config", "relay-tenant_admin", json=body)
    assert applied.status_code == 200, applied.text
    schemas.ConfigOut.model_validate(applied.json())
    assert [p["key"] for p in applied.json()["plans"]] == ["relay#core", "relay#pro"]
    moved = {
        "plans": [CORE | {"id": "core", "default": False}, PRO | {"id": "pro", "default": True}]
    }
    again = api.call("POST", "/v1/config", "relay-tenant_admin", json=moved)
    assert again.status_code == 200, again.text  # the default moved from core to pro
    assert [(p["id"], p["version"], p["default"]) for p in again.json()["plans"]] == [
        ("core", 2, False), ("pro", 2, True)]  # fmt: skip
    twice = {"budgets": [budget | {"limit": 1}], "plans": [PRO | {"id": "x"}, PRO | {"id": "x"}]}
    refused = api.call("POST", "/v1/config", "relay-tenant_admin", json=twice)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "plans[1].id"
    day = api.call("GET", "/v1/budgets/day", "relay-viewer").json()
    assert day["limit"] == "9"  # nothing was written
    other = api.call("POST", "/v1/config", "acme-admin", json={"plans": [PRO | {"id": "p"}]})
    assert other.status_code == 403


def test_the_openapi_document_lists_the_plan_endpoints(api: Relay) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {"get"} <= set(paths["/v1/plans"])
    assert {"get", "put", "delete"} <= set(paths["/v1/plans/{plan_id}"])
    assert {"get", "put"} <= set(paths["/v1/plans/assignments"])
    put = paths["/v1/plans/{plan_id}"]["put"]
    assert {"200", "403", "404", "409", "422"} <= set(put["responses"])
    assert "plans" in paths["/v1/config"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]  # fmt: skip
