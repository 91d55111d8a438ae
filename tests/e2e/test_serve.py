"""A real ``allotment serve`` process (2 workers, uvicorn) on loopback, driven over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ADMIN, serve, service_key

N = 150
CLIENTS = 64


def test_serve_end_to_end(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path / 'serve.db'}") as base:
        budget = {"id": "d", "tenant": "acme", "meter": "requests", "window": "day", "limit": 20}
        headers = {"Authorization": f"Bearer {service_key(base, 'acme', budget)}"}
        allowed = 0
        for i in range(25):  # new connections, spread over both workers
            with httpx.Client(base_url=base, headers=headers) as one:
                body = {"request_id": f"r{i}", "subject": {"tenant": "acme"},
                        "provider": "openai", "model": "gpt-4o-mini"}  # fmt: skip
                response = one.post("/v1/authorize", json=body)
                if response.status_code == 200:
                    allowed += 1
                    one.post("/v1/commit", json={"request_id": f"r{i}", "usage": {}})
                else:
                    assert response.status_code == 402
        assert allowed == 20
        with httpx.Client(base_url=base, headers=headers) as service:
            status = service.get("/v1/status").json()["budgets"][0]
            assert (status["used"], status["state"]) == (20, "exceeded")
            assert "x-request-id" in service.get("/healthz").headers
            metrics = service.get("/metrics").text  # both workers' counts, added up
            assert 'allotment_decisions_total{outcome="allowed",reason=""} 20.0' in metrics
            assert "allotment_reservations_in_flight 0" in metrics


async def _client(base: str, headers: dict[str, str], worker: int, attempts: int) -> int:
    allowed = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for i in range(attempts):
            rid = f"w{worker}-{i}"
            body = {"request_id": rid, "subject": {"tenant": "acme", "user": f"u{worker}"},
                    "provider": "openai", "model": "gpt-4o-mini",
                    "estimate": {"output_tokens": 100}}  # fmt: skip
            response = await client.post("/v1/authorize", json=body)
            if response.status_code == 200:
                allowed += 1
                usage = {"request_id": rid, "usage": {"output_tokens": 100}}
                (await client.post("/v1/commit", json=usage)).raise_for_status()
            else:
                assert response.status_code == 402, response.text
    return allowed


@pytest.mark.slow
def test_64_concurrent_clients_exactly_n_through_http(tmp_path: Path) -> None:
    """Invariant 1 through the service: 2 workers, 64 keep-alive clients, one budget."""
    with serve(f"sqlite:///{tmp_path / 'race.db'}") as base:
        budget = {"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day",
                  "limit": N * 100}  # fmt: skip
        headers = {"Authorization": f"Bearer {service_key(base, 'acme', budget)}"}

        async def race() -> list[int]:
            return await asyncio.gather(*(_client(base, headers, w, 4) for w in range(CLIENTS)))

        assert sum(asyncio.run(race())) == N  # 256 attempts for 150 slots
        with httpx.Client(base_url=base, headers=headers) as service:
            status = service.get("/v1/status").json()["budgets"][0]
            assert (status["used"], status["reserved"]) == (N * 100, 0)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=base, headers=admin) as reader:
            ledger = reader.get("/v1/events", params={"tenant": "acme", "status": "success",
                                                      "limit": 1000}).json()["events"]  # fmt: skip
        assert len(ledger) == N
        assert sum(e["usage"]["output_tokens"] for e in ledger) == N * 100
