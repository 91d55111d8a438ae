"""HTTP benchmark: authorize+commit pairs/s through ``allotment serve``, 64 clients.

Run with ``python -m bench.http`` (part of ``make bench``). The server (SQLite,
1 and 2 workers) and the load generator (asyncio + httpx, 64 keep-alive
clients) share this machine's cores, as they would in a sidecar deployment;
``/healthz`` on the same server in the same run is the baseline.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from tests.e2e.server import serve, service_key

CLIENTS = 64
PAIRS_PER_CLIENT = 40


async def _pairs(base: str, headers: dict[str, str], worker: int, out: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for i in range(PAIRS_PER_CLIENT):
            rid = f"b{worker}-{i}"
            body = {"request_id": rid, "subject": {"tenant": "bench", "user": f"u{worker}"},
                    "provider": "openai", "model": "gpt-4o-mini",
                    "estimate": {"output_tokens": 200}}  # fmt: skip
            t0 = time.perf_counter()
            (await client.post("/v1/authorize", json=body)).raise_for_status()
            usage = {"input_tokens": 120, "output_tokens": 80}
            commit = await client.post("/v1/commit", json={"request_id": rid, "usage": usage})
            commit.raise_for_status()
            out.append(time.perf_counter() - t0)


async def _health(base: str, out: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for _ in range(PAIRS_PER_CLIENT * 2):
            t0 = time.perf_counter()
            (await client.get("/healthz")).raise_for_status()
            out.append(time.perf_counter() - t0)


def _run(coros: list[Coroutine[None, None, None]]) -> float:
    async def gather() -> None:
        await asyncio.gather(*coros)

    start = time.perf_counter()
    asyncio.run(gather())
    return time.perf_counter() - start


def measure(workers: int) -> tuple[float, float, float, float]:
    """pairs/s, p50 ms, p99 ms, healthz requests/s for a server with ``workers``."""
    tmp = tempfile.mkdtemp(prefix="allotment-http-")
    with serve(f"sqlite:///{Path(tmp) / 'h.db'}", workers) as base:
        budget = {"id": "day", "tenant": "bench", "meter": "tokens", "window": "day",
                  "limit": 10**12}  # fmt: skip
        headers = {"Authorization": f"Bearer {service_key(base, 'bench', budget)}"}
        health: list[float] = []
        health_time = _run([_health(base, health) for _ in range(CLIENTS)])
        latencies: list[float] = []
        pairs_time = _run([_pairs(base, headers, w, latencies) for w in range(CLIENTS)])
    quantiles = statistics.quantiles(latencies, n=100)
    return (
        len(latencies) / pairs_time,
        quantiles[49] * 1000,
        quantiles[98] * 1000,
        len(health) / health_time,
    )


def main() -> None:
    """Print the table."""
    table = Table(title=f"allotment over HTTP: {CLIENTS} concurrent keep-alive clients, SQLite")
    for column in ("workers", "pairs/s", "p50 ms", "p99 ms", "/healthz req/s",
                   "pairs/s ÷ healthz req/s"):  # fmt: skip
        table.add_column(column, justify="right")
    for workers in (1, 2):
        rate, p50, p99, health = measure(workers)
        table.add_row(str(workers), f"{rate:,.0f}", f"{p50:.1f}", f"{p99:.1f}",
                      f"{health:,.0f}", f"{rate / health:.2f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
