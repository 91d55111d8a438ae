"""PostgreSQL benchmark: authorize+commit pairs/s, in-process and through two instances.

Run with ``python -m bench.postgres`` (part of ``make bench``). Two kinds of
traffic: ``hot`` (every call charges one tenant-wide budget: one counter row
every transaction locks) and ``spread`` (calls spread over 100 tenants, each
with its own budget). SQLite, measured the same way in the same run, is the
ratio's baseline. The service part runs 2 ``allotment serve`` instances with
2 workers each on one PostgreSQL database (SQLite: one instance, 2 workers)
and drives them with 64 keep-alive clients spread over the instances.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table
from tests.e2e.server import ADMIN, Instance

from allotment import Governor
from bench.http import CLIENTS, Send, drive

SERVER = os.environ.get("ALLOTMENT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TENANTS = {"hot": 1, "spread": 100}
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _budgets(traffic: str) -> list[dict[str, object]]:
    return [
        {"id": f"t{i}", "tenant": f"t{i}", "meter": "tokens", "window": "day", "limit": 10**14}
        for i in range(TENANTS[traffic])
    ]


def _subject(traffic: str, rng: random.Random) -> dict[str, str]:
    return {"tenant": f"t{rng.randrange(TENANTS[traffic])}", "user": f"u{rng.randrange(50)}"}


def _in_process(
    gov: Governor, traffic: str, threads: int, total: int
) -> tuple[float, float, float]:
    samples: list[list[int]] = [[] for _ in range(threads)]

    def run(worker: int) -> None:
        rng = random.Random(worker)
        for _ in range(total // threads):
            rid = uuid.uuid4().hex
            subject = _subject(traffic, rng)
            t0 = time.perf_counter_ns()
            gov.authorize(rid, subject, "openai", "gpt-4o-mini", {"output_tokens": 200})
            gov.commit(rid, {"input_tokens": 120, "output_tokens": 80})
            samples[worker].append(time.perf_counter_ns() - t0)

    run(0)  # warm-up: connections, prepared statements, caches
    samples[0].clear()
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(threads)))
    elapsed = time.perf_counter() - start
    flat = sorted(s for chunk in samples for s in chunk)
    return len(flat) / elapsed, flat[len(flat) // 2] / 1e3, flat[int(len(flat) * 0.99)] / 1e3


def _through_service(instances: list[Instance], traffic: str) -> tuple[float, float, float]:
    ports = [int(i.base.rsplit(":", 1)[1]) for i in instances]

    async def pair(send: Send, worker: int, i: int) -> None:
        rng = random.Random(worker * 1_000_003 + i)
        rid = f"b{worker}-{i}-{uuid.uuid4().hex[:8]}"
        call = {"request_id": rid, "subject": _subject(traffic, rng), "provider": "openai",
                "model": "gpt-4o-mini", "estimate": {"output_tokens": 200}}  # fmt: skip
        usage = {"request_id": rid, "usage": {"input_tokens": 120, "output_tokens": 80}}
        assert await send("POST", "/v1/authorize", call) == 200
        assert await send("POST", "/v1/commit", usage) == 200

    rate, p50, p99, _, _ = drive(ports, f"Authorization: Bearer {ADMIN}\r\n".encode(), pair)
    return rate, p50, p99


class _Databases:
    """Fresh databases of each kind; PostgreSQL schemas are dropped at the end."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="allotment-pg-bench-"))
        self.schemas: list[str] = []

    def url(self, store: str, pool: int = 20) -> str:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        if store == "sqlite":
            return f"sqlite:///{self.dir / name}.db"
        self.schemas.append(name)
        return f"{SERVER}?schema={name}&pool={pool}"

    def close(self) -> None:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            for name in self.schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def in_process(dbs: _Databases, pairs: int, console: Console) -> Table:
    """Pairs/s of one Governor with 1, 4 and 16 threads, per store and traffic."""
    table = Table(title="in-process authorize+commit pairs (one Governor, N threads)")
    for column in ("store", "traffic", "threads", "pairs/s", "p50 µs", "p99 µs", "÷ SQLite"):
        table.add_column(column, justify="left" if column in ("store", "traffic") else "right")
    sqlite_rate: dict[tuple[str, int], float] = {}
    for store in ("sqlite", "postgres"):
        for traffic in TENANTS:
            gov = Governor(dbs.url(store))
            for spec in _budgets(traffic):
                gov.create_budget(spec)
            for threads in (1, 4, 16):
                rate, p50, p99 = _in_process(gov, traffic, threads, pairs)
                baseline = sqlite_rate.setdefault((traffic, threads), rate)
                table.add_row(store, traffic, str(threads), f"{rate:,.0f}", f"{p50:,.0f}",
                              f"{p99:,.0f}", f"{rate / baseline:.2f}")  # fmt: skip
                console.log(f"{store} {traffic} {threads} threads: {rate:,.0f} pairs/s")
            gov.close()
    return table


def through_service(dbs: _Databases, console: Console, repeat: int = 1) -> Table:
    """Pairs/s through 2 PostgreSQL instances (and 1 SQLite instance) of 2 workers each.

    With ``repeat`` above 1 every configuration runs that many times,
    interleaved with the others, and the table shows medians and the range.
    """
    table = Table(title=f"through the service: {CLIENTS} keep-alive clients")
    for column in ("store", "instances x workers", "traffic", "pairs/s", "range", "p50 ms",
                   "p99 ms", "÷ SQLite"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("store", "traffic") else "right")
    configs = [(store, count, traffic) for store, count in (("sqlite", 1), ("postgres", 2))
               for traffic in TENANTS]  # fmt: skip
    runs: dict[tuple[str, int, str], list[tuple[float, float, float]]] = {c: [] for c in configs}
    for _ in range(repeat):  # interleaved, so a slow spell of the machine hits every one
        for store, count, traffic in configs:
            url = dbs.url(store, pool=4)
            with ExitStack() as stack:
                instances = []
                for _ in range(count):
                    instances.append(Instance(url, workers=2))
                    stack.callback(instances[-1].stop)
                with Governor(url) as gov:
                    for spec in _budgets(traffic):
                        gov.create_budget(spec)
                result = _through_service(instances, traffic)
            runs[(store, count, traffic)].append(result)
            console.log(f"service {store} {traffic}: {result[0]:,.0f} pairs/s")
    sqlite_rate: dict[str, float] = {}
    for (store, count, traffic), found in runs.items():
        rate, p50, p99 = (statistics.median(column) for column in zip(*found, strict=True))
        rates = [r for r, _, _ in found]
        baseline = sqlite_rate.setdefault(traffic, rate)
        table.add_row(store, f"{count} x 2", traffic, f"{rate:,.0f}",
                      f"{min(rates):,.0f}-{max(rates):,.0f}", f"{p50:.1f}", f"{p99:.1f}",
                      f"{rate / baseline:.2f}")  # fmt: skip
    return table


def _seed(i: int) -> dict[str, object]:
    return {
        "request_id": f"seed-{i}",
        "subject": {"tenant": f"t{i % 100}", "user": f"u{i % 50}"},
        "provider": "openai",
        "model": "gpt-4o-mini",
        "usage": {"output_tokens": 20},
        "occurred_at": NOW - timedelta(days=1 + i % 30, seconds=i % 86_400),
    }


def ledger_growth(dbs: _Databases, sizes: list[int], console: Console) -> Table:
    """Authorize+commit and status latency on PostgreSQL with ``sizes`` prior events."""
    table = Table(title="PostgreSQL latency against ledger size (1 thread)")
    for column in ("prior events", "pair p50 µs", "pair p99 µs", "status p50 µs",
                   "status p99 µs", "status p99 ÷ smallest"):  # fmt: skip
        table.add_column(column, justify="right")
    first: float | None = None
    for size in sizes:
        gov = Governor(dbs.url("postgres"), clock=lambda: NOW)
        for spec in _budgets("spread"):
            gov.create_budget(spec)
        for offset in range(0, size, 5000):
            gov.record_many([_seed(i) for i in range(offset, min(size, offset + 5000))])
        # Settle what autovacuum would do next anyway, so it does not run mid-measurement.
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'VACUUM ANALYZE "{dbs.schemas[-1]}".events')
            conn.execute(f'VACUUM ANALYZE "{dbs.schemas[-1]}".reservations')
        console.log(f"postgres: seeded {size:,} events")
        _, p50, p99 = _in_process(gov, "spread", 1, 600)
        samples = []
        for i in range(1000):
            t0 = time.perf_counter_ns()
            gov.status({"tenant": f"t{i % 100}", "user": "u1"})
            samples.append(time.perf_counter_ns() - t0)
        samples.sort()
        s50, s99 = samples[500] / 1e3, samples[990] / 1e3
        first = first or s99
        table.add_row(f"{size:,}", f"{p50:,.0f}", f"{p99:,.0f}", f"{s50:,.0f}", f"{s99:,.0f}",
                      f"{s99 / first:.2f}")  # fmt: skip
        gov.close()
    return table


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3000, help="pairs per in-process run")
    parser.add_argument("--skip-service", action="store_true")
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="service runs per configuration, interleaved; the table shows medians",
    )  # fmt: skip
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--events", default="10,200000", help="prior ledger sizes ('' skips)")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 110))  # the service table has 8 columns
    dbs = _Databases()
    try:
        if not args.skip_in_process:
            console.print(in_process(dbs, args.pairs, console))
        if not args.skip_service:
            console.print(through_service(dbs, console, args.repeat))
        if args.events:
            sizes = [int(n) for n in args.events.split(",")]
            console.print(ledger_growth(dbs, sizes, console))
    finally:
        dbs.close()


if __name__ == "__main__":
    main()
