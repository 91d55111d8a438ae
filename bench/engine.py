"""Engine benchmark: authorize+commit pairs/s and latency, status latency.

Run with ``make bench`` (or ``python -m bench.engine --help``). For each store
and ledger size it seeds the ledger through the real batch write path, then
measures, on the same machine in the same run:

- pairs: authorize + commit of one call, 1 and 4 threads;
- baseline: the same number of bare write transactions (the store's floor:
  a lock and a counter upsert, twice per pair), so ``x floor`` is a ratio
  that survives noisy machines;
- status: ``Governor.status`` of a subject with three applicable budgets.

The seed is a bulk load, not steady state: after it, a full garbage
collection runs and SQLite's write-ahead log is checkpointed before anything
is measured.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from allotment import Governor

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
SUBJECT = {"tenant": "bench", "user": "u0", "feature": "chat"}
BUDGETS = [
    {"id": "day", "tenant": "bench", "meter": "tokens", "window": "day", "limit": 10**14},
    {"id": "user-day", "tenant": "bench", "meter": "tokens", "window": "day", "per": "user",
     "limit": 10**14},
    {"id": "month", "tenant": "bench", "meter": "requests", "window": "month@Europe/Berlin",
     "limit": 10**12},
]  # fmt: skip


def percentile(samples: list[int], q: float) -> float:
    """The q-quantile of nanosecond samples, in microseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def seed(gov: Governor, events: int) -> float:
    """Write ``events`` past calls over the last 30 days; returns seconds taken."""
    start = time.perf_counter()
    batch = 5000
    for offset in range(0, events, batch):
        items = [
            {
                "request_id": f"seed-{i}",
                "subject": {"tenant": "bench", "user": f"u{i % 100}", "feature": f"f{i % 5}"},
                "provider": "openai",
                "model": "gpt-4o-mini",
                "usage": {"input_tokens": 100 + i % 50, "output_tokens": 20},
                "occurred_at": NOW - timedelta(days=1 + i % 30, seconds=i % 86_400),
            }
            for i in range(offset, min(events, offset + batch))
        ]
        gov.record_many(items)
    return time.perf_counter() - start


def pairs(gov: Governor, total: int, threads: int) -> tuple[float, float, float]:
    """Run ``total`` authorize+commit pairs over ``threads``; pairs/s, p50 and p99 µs."""
    samples: list[list[int]] = [[] for _ in range(threads)]
    for _ in range(200):  # warm-up: catalog lookups, caches, first-use imports
        rid = uuid.uuid4().hex
        gov.authorize(rid, SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 200})
        gov.commit(rid, {"input_tokens": 120, "output_tokens": 80})

    # The caller's request ids are made before the clock starts: not allotment's work.
    ids = [[uuid.uuid4().hex for _ in range(total // threads)] for _ in range(threads)]

    def run(worker: int) -> None:
        out = samples[worker]
        for rid in ids[worker]:
            t0 = time.perf_counter_ns()
            gov.authorize(rid, SUBJECT, "openai", "gpt-4o-mini", {"output_tokens": 200})
            gov.commit(rid, {"input_tokens": 120, "output_tokens": 80})
            out.append(time.perf_counter_ns() - t0)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(threads)))
    elapsed = time.perf_counter() - start
    flat = [s for chunk in samples for s in chunk]
    return len(flat) / elapsed, percentile(flat, 0.5), percentile(flat, 0.99)


def status(gov: Governor, calls: int) -> tuple[float, float]:
    """p50 and p99 of ``Governor.status`` in µs."""
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        gov.status(SUBJECT)
        samples.append(time.perf_counter_ns() - t0)
    return percentile(samples, 0.5), percentile(samples, 0.99)


def floor_memory(total: int) -> float:
    """Bare floor for the memory store: lock + dict update, twice per pair."""
    lock, counters = threading.Lock(), {("b", "", 0): [0, 0]}
    start = time.perf_counter()
    for _ in range(total):
        for _ in range(2):
            with lock:
                counters[("b", "", 0)][1] += 1
    return total / (time.perf_counter() - start)


def floor_sqlite(path: Path, total: int) -> float:
    """Bare floor for SQLite: BEGIN IMMEDIATE + counter upsert + COMMIT, twice per pair."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS c (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID")
    start = time.perf_counter()
    for _ in range(total * 2):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO c VALUES ('b', 1) ON CONFLICT (k) DO UPDATE SET v = v + 1")
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return total / elapsed


def run(stores: list[str], sizes: list[int], console: Console) -> Table:
    """Measure every store at every ledger size; returns the result table."""
    table = Table(title="allotment engine benchmark (authorize+commit pairs)")
    for column in ("store", "prior events", "threads", "pairs/s", "x floor", "p50 µs",
                   "p99 µs", "status p50 µs", "status p99 µs"):  # fmt: skip
        table.add_column(column, justify="right" if column != "store" else "left")
    workdir = Path(tempfile.mkdtemp(prefix="allotment-bench-"))
    floors: dict[str, Callable[[int], float]] = {
        "memory": floor_memory,
        "sqlite": lambda n: floor_sqlite(workdir / "floor.db", n),
    }
    status_p99: dict[tuple[str, int], float] = {}
    for store in stores:
        total = 20_000 if store == "memory" else 6_000
        floor = floors[store](total)
        for size in sizes:
            url = "memory://" if store == "memory" else f"sqlite:///{workdir / f'b{size}.db'}"
            gov = Governor(url, clock=lambda: NOW)
            for spec in BUDGETS:
                gov.create_budget(spec)
            took = seed(gov, size)
            gc.collect()  # the full collection the seed made due, not steady state
            if store == "sqlite":
                # Nor the seed's write-ahead log (150 MB at 1M events), which the
                # background checkpointer would otherwise be copying back while
                # status is measured: settle it first.
                with closing(sqlite3.connect(workdir / f"b{size}.db")) as conn:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            console.log(f"{store}: seeded {size:,} events in {took:.1f} s")
            s50, s99 = status(gov, 2000)
            status_p99[(store, size)] = s99
            for threads in (1, 4):
                rate, p50, p99 = pairs(gov, total, threads)
                table.add_row(store, f"{size:,}", str(threads), f"{rate:,.0f}",
                              f"{rate / floor:.3f}", f"{p50:.0f}", f"{p99:.0f}",
                              f"{s50:.0f}", f"{s99:.0f}")  # fmt: skip
            gov.close()
    for store in stores:
        if len(sizes) > 1:
            ratio = status_p99[(store, max(sizes))] / status_p99[(store, min(sizes))]
            table.caption = (table.caption or "") + (
                f"{store}: status p99 at {max(sizes):,} / at {min(sizes):,} events = {ratio:.2f}  "
            )
    return table


def main() -> None:
    """Parse arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--events", default="10,1000000", help="prior ledger sizes")
    args = parser.parse_args()
    console = Console()
    table = run(args.stores.split(","), [int(n) for n in args.events.split(",")], console)
    console.print(table)


if __name__ == "__main__":
    main()
