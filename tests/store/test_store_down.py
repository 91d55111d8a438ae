"""When the store cannot be reached: fail-closed budgets refuse, fail-open ones allow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app
from allotment.errors import StoreError
from allotment.governor import Governor


def broken(tmp_path: Path) -> Governor:
    gov = Governor(f"sqlite:///{tmp_path / 'a.db'}")
    for tenant, failure in (("open", "fail_open"), ("closed", "fail_closed")):
        gov.create_budget({"id": tenant, "tenant": tenant, "meter": "tokens", "window": "day",
                           "limit": 100, "failure": failure})  # fmt: skip
        assert gov.authorize(f"warm-{tenant}", {"tenant": tenant}, "o", "m").allowed
    gov.store.close()  # the file goes away: every new connection now fails
    gov.store.path = str(tmp_path / "gone" / "a.db")  # type: ignore[attr-defined]
    return gov


def test_fail_open_allows_and_says_so(tmp_path: Path) -> None:
    gov = broken(tmp_path)
    decision = gov.authorize("r1", {"tenant": "open"}, "o", "m", {"output_tokens": 10})
    assert decision.allowed and decision.degraded
    with pytest.raises(StoreError):
        gov.authorize("r2", {"tenant": "closed"}, "o", "m", {"output_tokens": 10})
    with pytest.raises(StoreError):  # nothing acknowledged is lost: the commit is refused
        gov.commit("r1", {"output_tokens": 10})


def test_service_answers_503_or_allows_degraded(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'a.db'}")
    _, admin = gov.create_key("admin")
    client = TestClient(create_app(gov))
    headers = {"Authorization": f"Bearer {admin}"}
    for tenant, failure in (("open", "fail_open"), ("closed", "fail_closed")):
        budget = {"id": tenant, "tenant": tenant, "meter": "tokens", "window": "day",
                  "limit": 100, "failure": failure}  # fmt: skip
        assert client.post("/v1/budgets", json=budget, headers=headers).status_code == 201

    def authorize(rid: str, tenant: str) -> Any:
        body = {"request_id": rid, "subject": {"tenant": tenant}, "provider": "o", "model": "m"}
        return client.post("/v1/authorize", json=body, headers=headers)

    assert authorize("warm", "open").status_code == 200  # the key and budgets are now known
    gov.store.close()  # the file goes away: every new connection now fails
    gov.store.path = str(tmp_path / "gone" / "a.db")  # type: ignore[attr-defined]
    closed = authorize("r1", "closed")
    assert closed.status_code == 503 and closed.json()["error"]["code"] == "store_unavailable"
    opened = authorize("r2", "open")
    assert opened.status_code == 200 and opened.json()["degraded"]
    assert client.get("/readyz").status_code == 503
    metrics = client.get("/metrics").text
    assert 'allotment_decisions_total{outcome="allowed",reason="store_unavailable"}' in metrics


def test_sqlite_reads_do_not_queue_behind_the_writer(tmp_path: Path) -> None:
    """status, usage and the ledger read a snapshot; they never take the write lock."""
    import threading

    gov = Governor(f"sqlite:///{tmp_path / 'r.db'}")
    gov.create_budget({"id": "d", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 100})  # fmt: skip
    gov.record("p", {"tenant": "acme"}, "o", "m", {"input_tokens": 5})
    lock = gov.store._write_lock  # type: ignore[attr-defined]
    answers: list[object] = []

    def read() -> None:
        answers.append(gov.status({"tenant": "acme"})[0].used)
        answers.append(len(gov.events()))
        answers.append(gov.usage("acme")[0].calls)

    with lock:  # a writer in the middle of its transaction
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), "a read waited for the write lock"
    assert answers == [5, 1, 1]
    gov.close()
