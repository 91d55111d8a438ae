"""A call allowed while the store was down (fail-open) is metered by its normal commit."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from allotment.api import create_app
from allotment.client import Client
from allotment.governor import Governor

BUDGET = {"id": "open", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 1000,
          "failure": "fail_open"}  # fmt: skip
SUBJECT = {"tenant": "acme", "user": "u1"}


def take_down(gov: Governor, tmp_path: Path) -> str:
    """Make every new connection fail (the file's directory vanishes); returns the real path."""
    path: str = gov.store.path  # type: ignore[attr-defined]
    gov.store.close()
    gov.store.path = str(tmp_path / "gone" / "a.db")  # type: ignore[attr-defined]
    return path


def bring_back(gov: Governor, path: str) -> None:
    gov.store.path = path  # type: ignore[attr-defined]


def test_the_library_commit_meters_a_degraded_call(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'a.db'}")
    gov.create_budget(BUDGET)
    assert gov.authorize("warm", SUBJECT, "openai", "gpt-4o", {"input_tokens": 1}).allowed
    path = take_down(gov, tmp_path)
    decision = gov.authorize("r1", SUBJECT, "openai", "gpt-4o", {"input_tokens": 50})
    assert decision.allowed and decision.degraded
    assert decision.commit_with == {"subject": SUBJECT, "provider": "openai", "model": "gpt-4o"}
    bring_back(gov, path)
    result = gov.commit("r1", {"input_tokens": 40, "output_tokens": 2})
    assert (result.event.subject.user, result.event.model) == ("u1", "gpt-4o")
    assert gov.commit("r1", {"input_tokens": 40, "output_tokens": 2}).replayed  # a retry
    assert gov.status(SUBJECT)[0].used == 42  # (warm is reserved, not used)
    gov.close()


def test_over_http_another_worker_meters_it_with_commit_with(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    worker_a, worker_b = Governor(url), Governor(url)
    worker_a.create_budget(BUDGET)
    _, admin = worker_a.create_key("admin")
    a, b = TestClient(create_app(worker_a)), TestClient(create_app(worker_b))
    client_a = Client("http://a", api_key=admin, http=a)
    assert client_a.authorize("warm", SUBJECT, "openai", "gpt-4o", {"input_tokens": 1}).allowed
    path = take_down(worker_a, tmp_path)
    decision = client_a.authorize("r1", SUBJECT, "openai", "gpt-4o", {"input_tokens": 50})
    assert decision.degraded and decision.commit_with["model"] == "gpt-4o"
    bring_back(worker_a, path)
    body = {"request_id": "r1", "usage": {"input_tokens": 30}, **decision.commit_with}
    answer = b.post("/v1/commit", json=body, headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 200, answer.text
    assert worker_b.status(SUBJECT)[0].used == 30
    # The Python client remembers what its degraded grants need: after the worker
    # restarted (forgetting the grant), a plain commit still meters the call.
    take_down(worker_a, tmp_path)
    assert client_a.authorize("r2", SUBJECT, "openai", "gpt-4o", {"input_tokens": 5}).degraded
    bring_back(worker_a, path)
    worker_a._degraded_calls.clear()
    assert client_a.commit("r2", {"input_tokens": 5}).event.request_id == "r2"
    assert worker_b.status(SUBJECT)[0].used == 35
