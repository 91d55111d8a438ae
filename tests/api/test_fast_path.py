"""The lean path for authorize, commit and release answers exactly as the FastAPI routes do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app
from allotment.governor import Governor
from tests.conftest import Clock

SUBJECT = {"tenant": "acme", "user": "u1"}
CALL = {"subject": SUBJECT, "provider": "openai", "model": "gpt-4o-mini"}
#: (path, key, body): a body of bytes is sent as is
CASES: list[tuple[str, str | None, Any]] = [
    ("/v1/authorize", "service", {"request_id": "a1", **CALL, "estimate": {"output_tokens": 10}}),
    ("/v1/authorize", "service", {"request_id": "a1", **CALL, "estimate": {"output_tokens": 10}}),
    ("/v1/authorize", "service", {"request_id": "a1", **CALL, "estimate": {"output_tokens": 11}}),
    (
        "/v1/authorize",
        "service",
        {"request_id": "a2", **CALL, "estimate": {"output_tokens": 10**6}},
    ),
    ("/v1/authorize", "service", {"request_id": "a3", **CALL, "extra": 1}),
    ("/v1/authorize", "service", {"request_id": 7, **CALL}),
    ("/v1/authorize", "service", {"request_id": "a4", **CALL, "estimate": {"output_tokens": -1}}),
    ("/v1/authorize", "service", {"request_id": "a5", **CALL, "ttl_seconds": "soon"}),
    ("/v1/authorize", "service", {"request_id": "a6", **CALL, "subject": {"tenant": "globex"}}),
    ("/v1/authorize", "viewer", {"request_id": "a7", **CALL}),
    ("/v1/authorize", None, {"request_id": "a8", **CALL}),
    ("/v1/authorize", "nonsense", {"request_id": "a9", **CALL}),
    ("/v1/authorize", "service", b"{not json"),
    ("/v1/authorize", "service", b"[1, 2]"),
    ("/v1/authorize", "service", b""),
    ("/v1/authorize", "service", b"\xff"),
    ("/v1/authorize", "service", {"request_id": "a10", **CALL, "ttl_seconds": True}),
    ("/v1/authorize", "service", {"request_id": "a11", **CALL, "ttl_seconds": 0}),
    ("/v1/authorize", "service", {"request_id": "a12", **CALL, "subject": {"tenant": 5}}),
    ("/v1/authorize", "service", {"subject": SUBJECT}),
    ("/v1/commit", "service", {"request_id": "a1", "usage": {"output_tokens": 9}}),
    ("/v1/commit", "service", {"request_id": "a1", "usage": {"output_tokens": 9}}),
    ("/v1/commit", "service", {"request_id": "a1", "usage": {"output_tokens": 8}}),
    ("/v1/commit", "service", {"request_id": "nope", "usage": {"output_tokens": 1}}),
    ("/v1/commit", "service", {"request_id": "p1", "usage": {"output_tokens": 1}, **CALL}),
    ("/v1/commit", "service", {"request_id": "a2", "usage": {"output_tokens": "x"}}),
    ("/v1/release", "service", {"request_id": "a1"}),
    ("/v1/release", "service", {"request_id": "missing"}),
    ("/v1/release", "service", {"request_id": "a1", "reason": 5}),
]


HEADERS = ("content-type", "x-budget-id", "x-budget-remaining", "x-budget-percent-used",
           "x-budget-resets-at")  # fmt: skip


def answers(tmp_path: Path, clock: Clock, lean: bool) -> list[tuple[int, Any, Any]]:
    gov = Governor(f"sqlite:///{tmp_path / f'{lean}.db'}", clock=clock)
    gov.create_budget({"id": "day", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 1000})  # fmt: skip
    keys = {"service": gov.create_key("service", "acme")[1],
            "viewer": gov.create_key("viewer", "acme")[1]}  # fmt: skip
    client = TestClient(create_app(gov, lean=lean))
    out = []
    for path, key, body in CASES:
        headers = {} if key is None else {"Authorization": f"Bearer {keys.get(key, key)}"}
        if isinstance(body, bytes):
            headers["Content-Type"] = "application/json"
            response = client.post(path, content=body, headers=headers)
        else:
            response = client.post(path, json=body, headers=headers)
        assert len(response.headers["x-request-id"]) >= 16
        headers = {name: response.headers.get(name) for name in HEADERS}
        out.append((response.status_code, _comparable(response.json()), headers))
    gov.close()
    return out


def _comparable(body: Any) -> Any:
    """The body without what differs run to run (event ids are per database, so they stay)."""
    if isinstance(body, dict):
        return {k: _comparable(v) for k, v in body.items() if k != "recorded_at"}
    if isinstance(body, list):
        return [_comparable(v) for v in body]
    return body


def test_lean_and_fastapi_paths_agree(tmp_path: Path, clock: Clock) -> None:
    lean, reference = answers(tmp_path, clock, True), answers(tmp_path, clock, False)
    for case, got, want in zip(CASES, lean, reference, strict=True):
        assert got == want, case


@pytest.mark.parametrize("size", [17 * 1024 * 1024])
def test_oversized_bodies_are_refused(tmp_path: Path, clock: Clock, size: int) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'big.db'}", clock=clock)
    secret = gov.create_key("service", "acme")[1]
    client = TestClient(create_app(gov))
    response = client.post("/v1/authorize", content=b" " * size,
                           headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    gov.close()


def test_request_ids_are_echoed_or_new_and_unique(tmp_path: Path, clock: Clock) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'ids.db'}", clock=clock)
    secret = gov.create_key("service", "acme")[1]
    client = TestClient(create_app(gov))
    auth = {"Authorization": f"Bearer {secret}"}
    body = {"request_id": "r1", **CALL}
    given = client.post("/v1/authorize", json=body, headers=auth | {"X-Request-Id": "trace-7"})
    assert given.headers["x-request-id"] == "trace-7"
    ids = {client.post("/v1/release", json={"request_id": "r1"}, headers=auth)
           .headers["x-request-id"] for _ in range(50)}  # fmt: skip
    assert len(ids) == 50
    gov.close()


def test_an_unexpected_failure_is_a_json_500_and_the_service_goes_on(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'boom.db'}", clock=clock)
    secret = gov.create_key("service", "acme")[1]
    client = TestClient(create_app(gov))
    auth = {"Authorization": f"Bearer {secret}"}

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gov, "release", boom)
    failed = client.post("/v1/release", json={"request_id": "r1"}, headers=auth)
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal_error"
    assert "a bug" not in failed.text  # no internals leak to the caller
    monkeypatch.undo()
    assert client.post("/v1/authorize", json={"request_id": "r2", **CALL},
                       headers=auth).status_code == 200  # fmt: skip
    gov.close()
