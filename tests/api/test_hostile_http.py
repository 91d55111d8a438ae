"""Hostile HTTP: bad input is a 4xx JSON error naming the field, never a 500, a stalled
worker or something half written; and both paths answer it alike.

"lean" is the service as it runs (authorize, commit and release answered before
FastAPI); "fastapi" is ``create_app(gov, lean=False)``, where FastAPI's routes answer
them. Every other route is FastAPI's on both.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from allotment.api import app as app_module
from allotment.api import create_app
from allotment.api.middleware import MAX_BODY
from allotment.errors import ConfigurationError
from allotment.governor import Governor
from tests.conftest import Clock
from tests.e2e.server import free_port

ACME = {"tenant": "acme", "user": "u1"}
CALL = {"subject": ACME, "provider": "openai", "model": "gpt-4o-mini"}
BUDGET = {"id": "day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 1000}


class Api:
    """One app over a fresh SQLite store, with an admin key and acme's keys."""

    def __init__(self, path: Path, clock: Clock, lean: bool) -> None:
        self.gov = Governor(f"sqlite:///{path}", clock=clock)
        self.gov.create_budget(BUDGET)
        self.keys = {name: self.gov.create_key(role, tenant, name)[1] for name, role, tenant in [
            ("admin", "admin", None), ("service", "service", "acme"),
            ("acme-admin", "tenant_admin", "acme"), ("globex", "service", "globex"),
        ]}  # fmt: skip
        self.client = TestClient(create_app(self.gov, lean=lean))

    def call(self, method: str, path: str, key: str = "service", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[key]}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def reserved(self) -> int:
        status = self.call("GET", "/v1/status").json()["budgets"][0]
        return int(status["reserved"]) + int(status["used"])


@pytest.fixture(params=[True, False], ids=["lean", "fastapi"])
def api(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Api]:
    api = Api(tmp_path / "api.db", clock, lean=request.param)
    yield api
    api.gov.close()


@pytest.fixture
def both(tmp_path: Path, clock: Clock) -> Iterator[tuple[Api, Api]]:
    pair = Api(tmp_path / "lean.db", clock, True), Api(tmp_path / "fastapi.db", clock, False)
    yield pair
    for api in pair:
        api.gov.close()


def field_of(response: httpx.Response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    return str(response.json()["error"]["field"])


# --- 1. PATCH takes budget fields only ----------------------------------------------------


@pytest.mark.parametrize("name", ["budget_id", "self", "limits", "changes"])
def test_patch_takes_only_budget_fields(api: Api, name: str) -> None:
    before = api.call("GET", "/v1/budgets/day", "admin").json()
    answer = api.call("PATCH", "/v1/budgets/day", "admin", json={"limit": 5, name: "x"})
    assert field_of(answer) == name
    assert api.call("GET", "/v1/budgets/day", "admin").json() == before  # nothing half written
    changed = api.call("PATCH", "/v1/budgets/day", "acme-admin", json={"limit": 5, "soft": [50]})
    assert changed.status_code == 200 and changed.json()["limit"] == "5"


# --- 2. Booleans are not numbers; errors name the wire field ------------------------------


@pytest.mark.parametrize("ttl", [True, False, 60.0, "60", 0, 7 * 24 * 3600 + 1, -1, 10**30])
def test_ttl_seconds_is_a_strict_integer_in_range(api: Api, ttl: Any) -> None:
    answer = api.call("POST", "/v1/authorize", json={"request_id": "r1", **CALL,
                                                     "ttl_seconds": ttl})  # fmt: skip
    assert field_of(answer) == "ttl_seconds"
    assert api.reserved() == 0
    ok = api.call("POST", "/v1/authorize", json={"request_id": "r1", **CALL, "ttl_seconds": 60})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(("name", "value"), [("limit", "true"), ("cursor", "false"),
                                             ("limit", "1.5"), ("limit", "0")])  # fmt: skip
def test_integer_query_parameters_refuse_other_values(api: Api, name: str, value: str) -> None:
    assert field_of(api.call("GET", "/v1/events", "admin", params={name: value})) == name


def test_a_boolean_is_no_time_and_fields_are_named_as_the_governor_names_them(api: Api) -> None:
    events = [
        {"request_id": "e1", **CALL, "usage": {}},
        {"request_id": "e2", **CALL, "usage": {}, "occurred_at": True},
    ]
    answer = api.call("POST", "/v1/events", json={"events": events})
    assert field_of(answer) == "events[1].occurred_at"  # pydantic's loc, in the Governor's form
    assert api.call("GET", "/v1/events", "admin", params={"tenant": "acme"}).json()["events"] == []


# --- 3. One contract for both paths --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "broken"),
    [
        ("POST", "/v1/authorize", {"request_id": "r1", **CALL}, "authorize_async"),
        ("POST", "/v1/commit", {"request_id": "r1", "usage": {}}, "commit_async"),
        ("POST", "/v1/release", {"request_id": "r1"}, "release"),
        ("GET", "/v1/status", None, "status"),
        ("POST", "/v1/events", {"events": []}, "record_many"),
    ],
)
def test_a_failure_nobody_foresaw_is_a_logged_json_500(
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: Any,
    broken: str,
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug with a secret inside")

    monkeypatch.setattr(api.gov, broken, boom)
    with caplog.at_level(logging.ERROR, "allotment.api"):
        answer = api.call(method, path, json=body)
    assert answer.status_code == 500, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "internal_error" and answer.headers["x-request-id"]
    assert "secret" not in answer.text
    assert any(r.exc_info and "secret" in str(r.exc_info[1]) for r in caplog.records)
    monkeypatch.undo()
    assert api.call("POST", "/v1/authorize", json={"request_id": "r2", **CALL}).status_code == 200


#: (content type, body) pairs; every one is refused, the same way on both paths
BAD_BODIES = [
    ("application/json", b"{not json"),
    ("application/json", b"\xff\xfe"),
    ("application/json", b'{"request_id": "\\ud800"}'),
    ("application/json", b""),
    ("application/json", b"[1, 2]"),
    ("application/json", b"null"),
    ("text/plain", b"{not json"),
    (None, b"{not json"),
]


@pytest.mark.parametrize(("content_type", "body"), BAD_BODIES)
@pytest.mark.parametrize("path", ["/v1/authorize", "/v1/commit", "/v1/budgets"])
def test_bad_json_gets_the_same_422_on_both_paths(
    both: tuple[Api, Api], path: str, content_type: str | None, body: bytes
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    key = "admin" if path == "/v1/budgets" else "service"
    lean, fastapi = (api.call("POST", path, key, content=body, headers=headers) for api in both)
    assert field_of(lean) == "body"
    assert (lean.status_code, lean.json()) == (fastapi.status_code, fastapi.json())


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=utf-8"])  # fmt: skip
def test_a_json_body_is_read_whatever_its_content_type(api: Api, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = b'{"request_id": "r1", "subject": {"tenant": "acme"}, "provider": "o", "model": "m"}'
    assert api.call("POST", "/v1/authorize", content=body, headers=headers).status_code == 200
    budget = b'{"id": "week", "meter": "tokens", "window": "week", "limit": 5}'
    created = api.call("POST", "/v1/budgets", "acme-admin", content=budget, headers=headers)
    assert created.status_code == 201, created.text


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/v1/authorize", "POST"), ("PUT", "/v1/commit", "POST"),
    ("DELETE", "/v1/status", "GET"), ("POST", "/healthz", "GET"),
])  # fmt: skip
def test_a_wrong_method_is_a_json_405_with_allow(
    api: Api, method: str, path: str, allowed: str
) -> None:
    answer = api.call(method, path)
    assert answer.status_code == 405 and answer.json()["error"]["code"] == "http_error"
    assert allowed in answer.headers["allow"]


@pytest.mark.parametrize("path", ["/v1/events", "/v1/authorize", "/v1/budgets/day"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_a_json_413_on_every_route(
    api: Api, path: str, chunked: bool
) -> None:
    piece = b" " * (1024 * 1024)
    pieces = MAX_BODY // len(piece) + 1
    content: Any = iter([piece] * pieces) if chunked else piece * pieces
    method = "PATCH" if path.startswith("/v1/budgets") else "POST"
    answer = api.call(method, path, "admin", content=content)
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "payload_too_large" and answer.headers["x-request-id"]


def test_tenant_errors_name_the_field(api: Api) -> None:
    assert field_of(api.call("GET", "/v1/status", "admin")) == "tenant"
    assert field_of(api.call("GET", "/v1/usage", "admin")) == "tenant"
    for key in ("service", "globex"):  # one request id, two tenants
        subject = {"tenant": "acme" if key == "service" else "globex"}
        body = {"request_id": "job", **CALL, "subject": subject, "estimate": {"input_tokens": 7}}
        assert api.call("POST", "/v1/authorize", key, json=body).status_code == 200
    ambiguous = api.call("POST", "/v1/release", "admin", json={"request_id": "job"})
    assert field_of(ambiguous) == "tenant"
    assert api.reserved() == 7  # still held: nothing was released
    odd = {"request_id": "r9", **CALL, "subject": {"tenant": 5}}
    assert field_of(api.call("POST", "/v1/authorize", json=odd)) == "subject.tenant"
    event = {"request_id": "e1", **CALL, "subject": {"tenant": ["acme"]}, "usage": {}}
    assert field_of(api.call("POST", "/v1/events", json={"events": [event]})) == (
        "events[0].subject.tenant"
    )


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a real uvicorn (httptools, as ``allotment serve`` runs it) on a free port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), http="httptools",
                            log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_contract_holds_on_the_wire(tmp_path: Path, clock: Clock) -> None:
    """Through uvicorn and httptools: framing (a declared length, a chunked body) is theirs."""
    api = Api(tmp_path / "wire.db", clock, lean=True)
    auth = {"Authorization": f"Bearer {api.keys['service']}"}
    call = b'{"request_id": "w1", "subject": {"tenant": "acme"}, "provider": "o", "model": "m"}'
    over = b" " * (MAX_BODY + 1)
    with served(api.client.app) as base, httpx.Client(base_url=base, headers=auth) as client:
        plain = client.post("/v1/authorize", content=call, headers={"Content-Type": "text/plain"})
        assert plain.status_code == 200, plain.text
        assert client.post("/v1/events", content=over).status_code == 413
        chunked = client.post("/v1/events", content=iter([over[:MAX_BODY], b" "]))
        assert chunked.status_code == 413 and "transfer-encoding" in chunked.request.headers
        assert chunked.json()["error"]["code"] == "payload_too_large"
        wrong = client.get("/v1/authorize")
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    api.gov.close()


# --- 4. A long prompt is estimated off the event loop, with bounded work --------------------


def _loop_stalls(app: FastAPI, key: str, body: dict[str, Any]) -> tuple[float, float, int]:
    """Authorize ``body`` while probing ``/healthz`` on the same loop: the slowest
    probe's seconds, the authorization's seconds and its status."""

    async def run() -> tuple[float, float, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            await client.get("/healthz")  # the thread pool is up
            started = time.perf_counter()
            call = asyncio.create_task(client.post(
                "/v1/authorize", json=body, headers={"Authorization": f"Bearer {key}"}
            ))  # fmt: skip
            slowest = 0.0
            while not call.done():
                probe = time.perf_counter()
                assert (await client.get("/healthz")).status_code == 200
                slowest = max(slowest, time.perf_counter() - probe)
                await asyncio.sleep(0.01)
            answer = await call
            return slowest, time.perf_counter() - started, answer.status_code

    return asyncio.run(run())


def test_a_10_mb_prompt_does_not_stall_the_worker(tmp_path: Path, clock: Clock) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'big.db'}", clock=clock)
    key = gov.create_key("service", "acme")[1]
    prompt = ("Summarise the budget report for the quarter. " * 250_000)[: 10 * 1024 * 1024]
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
    slowest, took, status = _loop_stalls(
        create_app(gov), key, {"request_id": "big", **CALL, "request": request}
    )
    assert status == 200
    assert took < 1.5  # it took 1.9 s of tokenizing before
    assert slowest < 0.5
    gov.close()


def test_the_estimate_runs_off_the_event_loop(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However long an estimate takes, the loop goes on answering."""
    from allotment.api import calls
    from allotment.core.usage import Usage

    def slow_estimate(*args: Any, **kwargs: Any) -> Usage:
        time.sleep(1.0)  # a long prompt's tokenizing, without holding the GIL
        return Usage(input_tokens=10)

    monkeypatch.setattr(calls, "estimate_request", slow_estimate)
    gov = Governor(f"sqlite:///{tmp_path / 'slow.db'}", clock=clock)
    key = gov.create_key("service", "acme")[1]
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    slowest, took, status = _loop_stalls(
        create_app(gov), key, {"request_id": "slow", **CALL, "request": request}
    )
    assert status == 200 and took >= 1.0
    assert slowest < 0.5  # on the loop, one probe would wait the whole second
    gov.close()


# --- 5. Reads run on a bounded number of threads --------------------------------------------


def _peak_read_threads(app: FastAPI, gov: Governor, key: str) -> tuple[int, int]:
    """The thread limit in force and the most reads that ran at once, of 16 sent together."""
    running, peak, lock = 0, 0, threading.Lock()
    status = gov.status

    def slow_status(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return status(*args, **kwargs)

    gov.status = slow_status  # type: ignore[method-assign]

    async def run() -> int:
        async with app.router.lifespan_context(app):
            limit = anyio.to_thread.current_default_thread_limiter().total_tokens
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                auth = {"Authorization": f"Bearer {key}"}
                answers = await asyncio.gather(
                    *(client.get("/v1/status", headers=auth) for _ in range(16))
                )
        assert all(a.status_code == 200 for a in answers)
        return int(limit)

    limit = asyncio.run(run())
    return limit, peak


def test_reads_run_on_at_most_read_threads(tmp_path: Path, clock: Clock) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'reads.db'}", clock=clock)
    key = gov.create_key("service", "acme")[1]
    assert _peak_read_threads(create_app(gov, read_threads=3), gov, key) == (3, 3)
    gov.close()


def test_read_threads_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOTMENT_DB", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("ALLOTMENT_SWEEP_SECONDS", "0")
    monkeypatch.setattr(app_module.gc, "freeze", lambda: None)  # not in a test process
    monkeypatch.setattr(app_module, "bootstrap_admin_key", lambda governor: None)
    monkeypatch.setenv("ALLOTMENT_READ_THREADS", "2")
    app = app_module.build_app()
    gov: Governor = app.state.governor
    key = gov.create_key("service", "acme")[1]
    assert _peak_read_threads(app, gov, key) == (2, 2)
    gov.close()
    for wrong in ("0", "-1", "many"):
        monkeypatch.setenv("ALLOTMENT_READ_THREADS", wrong)
        with pytest.raises(ConfigurationError, match="ALLOTMENT_READ_THREADS"):
            app_module.build_app()
