"""Late overshoot over HTTP: in the commit answer, in status and in the metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient

from allotment.api import create_app, schemas
from allotment.governor import Governor
from tests.conftest import Clock

SUBJECT = {"tenant": "acme"}


def test_late_commits_past_the_cap_are_reported(clock: Clock) -> None:
    gov = Governor("memory://", clock=clock)
    gov.create_budget({"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 10})  # fmt: skip
    _, key = gov.create_key("service", "acme")
    client = TestClient(create_app(gov))
    headers = {"Authorization": f"Bearer {key}"}

    def post(path: str, **body: object) -> dict[str, object]:
        answer = client.post(path, json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    estimate = {"input_tokens": 5}
    post("/v1/authorize", request_id="old", subject=SUBJECT, provider="o", model="m",
         estimate=estimate, ttl_seconds=1)  # fmt: skip
    clock.advance(seconds=2)
    post("/v1/authorize", request_id="new", subject=SUBJECT, provider="o", model="m",
         estimate={"input_tokens": 8})  # fmt: skip
    late = post("/v1/commit", request_id="old", usage=estimate)
    schemas.CommitOut.model_validate(late)
    assert late["late"] and late["late_overshoot"] == [
        {
            "budget_id": "cap",
            "member": "",
            "meter": "tokens",
            "amount": 3,
            "unit": "tokens",
            "currency": None,
        }
    ]
    post("/v1/commit", request_id="new", usage={"input_tokens": 8})
    status = client.get("/v1/status", params={"tenant": "acme"}, headers=headers).json()
    assert status["budgets"][0]["overshoot"] == 3
    metrics = client.get("/metrics").text
    assert 'allotment_late_overshoot_total{meter="tokens"}' in metrics
    assert "allotment_late_commits_total" in metrics
