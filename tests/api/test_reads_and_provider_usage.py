"""Status by any subject dimension and tags, top-N usage, and provider usage over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app
from allotment.governor import Governor

ANTHROPIC_USAGE = {"input_tokens": 100, "cache_read_input_tokens": 1000,
                   "cache_creation_input_tokens": 200, "output_tokens": 50}  # fmt: skip


@pytest.fixture(params=[True, False], ids=["lean", "fastapi"])
def api(request: pytest.FixtureRequest) -> tuple[TestClient, dict[str, str], Governor]:
    gov = Governor("memory://")
    _, key = gov.create_key("tenant_admin", "globex")
    gov.create_budget({"id": "org", "tenant": "globex", "meter": "cost", "window": "day",
                       "limit": "10", "exclude": {"tags.byok": "true"}})  # fmt: skip
    gov.create_budget({"id": "byok", "tenant": "globex", "meter": "cost", "window": "day",
                       "match": {"tags.byok": "true"}})  # fmt: skip
    client = TestClient(create_app(gov, lean=request.param))
    return client, {"Authorization": f"Bearer {key}"}, gov


def test_status_takes_tags_and_groups(api: tuple[TestClient, dict[str, str], Governor]) -> None:
    client, headers, _ = api

    def budgets(**params: Any) -> list[str]:
        answer = client.get("/v1/status", params={"tenant": "globex", **params}, headers=headers)
        assert answer.status_code == 200, answer.text
        return [b["budget_id"] for b in answer.json()["budgets"]]

    assert budgets() == ["org"]
    assert budgets(tag="byok:true") == ["byok"]  # BYO-key spend, kept out of org limits
    assert budgets(groups="eng", session="s1", install="i1") == ["org"]
    bad = client.get("/v1/status", params={"tag": "byok"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "tag"


def test_usage_top_n_by_cost_with_its_currency(
    api: tuple[TestClient, dict[str, str], Governor],
) -> None:
    client, headers, gov = api
    for i, cost in enumerate(["0.5", "3", "1"]):
        gov.record(f"r{i}", {"tenant": "globex", "key": f"k{i}"}, "o", "m", {"cost": cost})
    params = {"by": "key", "order": "cost", "limit": 2}
    rows = client.get("/v1/usage", params=params, headers=headers).json()["rows"]
    assert [(r["group"]["key"], r["cost_micros"], r["currency"]) for r in rows] == [
        ("k1", 3_000_000, "USD"), ("k2", 1_000_000, "USD"),
    ]  # fmt: skip


def test_a_commit_may_send_the_providers_usage_as_is(
    api: tuple[TestClient, dict[str, str], Governor],
) -> None:
    client, headers, _ = api
    body = {"request_id": "r1", "subject": {"tenant": "globex"}, "provider": "anthropic",
            "model": "claude-sonnet-4", "estimate": {"input_tokens": 2000}}  # fmt: skip
    assert client.post("/v1/authorize", json=body, headers=headers).status_code == 200
    commit = {"request_id": "r1", "usage": ANTHROPIC_USAGE, "usage_from": "anthropic"}
    answer = client.post("/v1/commit", json=commit, headers=headers)
    assert answer.status_code == 200, answer.text
    usage = answer.json()["event"]["usage"]
    assert (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"]) == (
        1300, 1000, 50,
    )  # fmt: skip
    event = {"request_id": "p1", "subject": {"tenant": "globex"}, "provider": "openai",
             "model": "gpt-4o", "usage": {"prompt_tokens": 7, "completion_tokens": 3},
             "usage_from": "openai"}  # fmt: skip
    recorded = client.post("/v1/events", json={"events": [event]}, headers=headers)
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["events"][0]["event"]["usage"]["input_tokens"] == 7
    bad = client.post("/v1/commit", json={**commit, "request_id": "r2", "usage": {"x": 1}},
                      headers=headers)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["error"]["field"].startswith("usage")


def test_a_commit_answers_its_overshoot(api: tuple[TestClient, dict[str, str], Governor]) -> None:
    client, headers, _ = api
    body = {"request_id": "r1", "subject": {"tenant": "globex"}, "provider": "o",
            "model": "m", "estimate": {"cost": "1"}}  # fmt: skip
    assert client.post("/v1/authorize", json=body, headers=headers).status_code == 200
    commit = {"request_id": "r1", "usage": {"cost": "1.5"}}
    answer = client.post("/v1/commit", json=commit, headers=headers).json()
    assert [(o["budget_id"], o["difference"]) for o in answer["overshoot"]] == [("org", -500_000)]
