"""A call allowed while the store was down (fail-open) is metered by its normal commit."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app
from allotment.client import Client
from allotment.errors import StoreError
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


HOSTED = {"provider": "openai", "model": "gpt-4o-mini", "backend": "hosted"}
OWN = {"provider": "openai", "model": "gpt-4o", "backend": "own"}


def test_with_the_store_down_routes_fall_back_to_a_fail_open_candidate(tmp_path: Path) -> None:
    """Routes hold while the store is down: a candidate with a fail-closed budget is
    skipped (``store_unavailable``, naming the budget), the next whose budgets all
    fail open is granted degraded, and its commit meters it on that route."""
    gov = Governor(f"sqlite:///{tmp_path / 'a.db'}")
    gov.create_budget({"id": "hosted", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 1000, "match": {"backend": "hosted"}})  # fmt: skip
    gov.create_budget({**BUDGET, "match": {"backend": "own"}})
    routes = [HOSTED, OWN]
    warm = gov.authorize(
        "warm", SUBJECT, "openai", "gpt-4o-mini", {"input_tokens": 1}, routes=routes
    )
    assert warm.route is not None and warm.route.backend == "hosted"
    path = take_down(gov, tmp_path)
    decision = gov.authorize("r1", SUBJECT, "openai", "gpt-4o-mini", {"input_tokens": 50},
                             routes=routes)  # fmt: skip
    assert decision.allowed and decision.degraded
    assert decision.route is not None and decision.route.label == "openai/gpt-4o@own"
    [skipped] = decision.skipped
    assert skipped.route.backend == "hosted"
    assert [(r.budget_id, r.reason.value) for r in skipped.refusals] == [
        ("hosted", "store_unavailable")
    ]
    served = {"backend": "own", "requested_route": "openai/gpt-4o-mini@hosted"}
    subject = {**SUBJECT, "tags": served}
    assert decision.commit_with == {"subject": subject, "provider": "openai", "model": "gpt-4o"}
    answer = decision.to_dict()
    assert answer["route"]["backend"] == "own"
    assert answer["skipped"][0]["reason"] == "store_unavailable"
    # Only fail-closed candidates: the store's error stands.
    with pytest.raises(StoreError):
        gov.authorize("r2", SUBJECT, "openai", "gpt-4o-mini", {"input_tokens": 5}, routes=[HOSTED])
    bring_back(gov, path)
    result = gov.commit("r1", {"input_tokens": 40})
    assert (result.event.model, dict(result.event.subject.tags)) == ("gpt-4o", served)
    assert [v.used for v in gov.status(subject)] == [40]
    gov.close()


def test_over_http_a_degraded_route_answers_like_a_routed_one(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'a.db'}")
    gov.create_budget({"id": "hosted", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 1000, "match": {"backend": "hosted"}})  # fmt: skip
    gov.create_budget({**BUDGET, "match": {"backend": "own"}})
    _, admin = gov.create_key("admin")
    client = Client("http://a", api_key=admin, http=TestClient(create_app(gov)))
    ask = ("acme-req", SUBJECT, "openai", "gpt-4o-mini", {"input_tokens": 5})
    assert client.authorize(*ask, routes=[HOSTED, OWN]).route == HOSTED
    take_down(gov, tmp_path)
    decision = client.authorize("r1", *ask[1:], routes=[HOSTED, OWN])
    assert decision.allowed and decision.degraded
    assert decision.route == OWN
    assert [(s["backend"], s["budget_id"], s["reason"]) for s in decision.skipped] == [
        ("hosted", "hosted", "store_unavailable")
    ]
    assert decision.commit_with["model"] == "gpt-4o"
