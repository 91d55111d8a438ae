"""A shadow budget never refuses; what it would have refused is counted by budget and
reason, and listed in the ledger."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from allotment.api import create_app
from allotment.governor import Governor


def shadow_count(client: TestClient, budget: str, reason: str) -> float:
    """``allotment_shadow_refusals_total`` of ``budget`` and ``reason`` (0 before its first)."""
    text = client.get("/metrics").text
    pattern = rf'allotment_shadow_refusals_total{{budget="{budget}",reason="{reason}"}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_shadow_refusals_are_counted_and_let_through() -> None:
    gov = Governor("memory://")
    gov.create_budget({"id": "trial", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 100, "mode": "shadow"})  # fmt: skip
    _, admin = gov.create_key("admin")
    client = TestClient(create_app(gov))
    headers = {"Authorization": f"Bearer {admin}"}
    before = shadow_count(client, "trial", "estimate_exceeds_remaining")

    def authorize(request_id: str, tokens: int) -> dict[str, object]:
        body = {"request_id": request_id, "subject": {"tenant": "acme"}, "provider": "openai",
                "model": "gpt-4o-mini", "estimate": {"input_tokens": tokens}}  # fmt: skip
        answer = client.post("/v1/authorize", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        data: dict[str, object] = answer.json()
        return data

    assert authorize("fits", 50)["shadow_refusals"] == []
    over = authorize("over", 500)
    assert over["allowed"] and [r["budget_id"] for r in over["shadow_refusals"]] == ["trial"]  # type: ignore[attr-defined, index]
    authorize("over", 500)  # a replay is not counted again
    assert shadow_count(client, "trial", "estimate_exceeds_remaining") == before + 1
    events = client.get("/v1/events", params={"tenant": "acme", "status": "shadow"},
                        headers=headers).json()["events"]  # fmt: skip
    assert [(e["request_id"], e["budget_id"]) for e in events] == [("over", "trial")]
