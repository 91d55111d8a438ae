"""A real ``allotment serve`` process (2 workers, uvicorn) on loopback, driven over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ADMIN = "ak_0123456789ab_e2e-admin-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    script = Path(sys.executable).parent / "allotment"
    env = os.environ | {"ALLOTMENT_ADMIN_KEY": ADMIN}
    process = subprocess.Popen(
        [str(script), "serve", "--port", str(port), "--workers", "2",
         "--db", f"sqlite:///{tmp_path / 'serve.db'}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("allotment serve did not become ready")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)
        assert process.stdout is not None
        process.stdout.close()


def test_serve_end_to_end(server: str) -> None:
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        budget = {"id": "d", "tenant": "acme", "meter": "requests", "window": "day", "limit": 20}
        assert admin.post("/v1/budgets", json=budget).status_code == 201
        made = admin.post("/v1/keys", json={"role": "service", "tenant": "acme"})
    headers = {"Authorization": f"Bearer {made.json()['secret']}"}
    allowed = 0
    for i in range(25):  # spread over both workers by new connections
        with httpx.Client(base_url=server, headers=headers) as one:
            body = {"request_id": f"r{i}", "subject": {"tenant": "acme"}, "provider": "openai",
                    "model": "gpt-4o-mini"}  # fmt: skip
            response = one.post("/v1/authorize", json=body)
            if response.status_code == 200:
                allowed += 1
                one.post("/v1/commit", json={"request_id": f"r{i}", "usage": {}})
            else:
                assert response.status_code == 402
    assert allowed == 20
    with httpx.Client(base_url=server, headers=headers) as service:
        status = service.get("/v1/status").json()["budgets"][0]
        assert (status["used"], status["state"]) == (20, "exceeded")
        assert "x-request-id" in service.get("/healthz").headers
