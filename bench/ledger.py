"""Ledger benchmark: latency of one page of the ledger against the size of the store.

Run with ``python -m bench.ledger`` (``--help`` for the options). For each
store and each ``--events`` size it seeds a ledger shared by ``--tenants``
tenants through the real batch write path (``bench.postgres``'s items: one
call in eight is an ``error``), then reads ``--pages`` pages of 100 events of
one tenant, as ``GET /v1/events`` does: from the first page (cursor 0) and
from random cursors a reader could hold (ids of matching events with a full
page after them), without a filter, with a status filter and with a time
filter. A page should cost the same in a store of 10 thousand events as in
one of a million: the last table divides the largest size's latency by the
smallest's (goal: at most 1.5).

PostgreSQL (``$ALLOTMENT_BENCH_POSTGRES``) works in schemas of its own and
drops them. Before measuring, SQLite's write-ahead log is checkpointed and
PostgreSQL's tables vacuumed and analyzed, as their background work would
have done by then.
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import sqlite3
import time
from contextlib import closing
from datetime import timedelta
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from allotment import Governor
from allotment.store.base import EventQuery
from bench.engine import percentile
from bench.postgres import NOW, SERVER, _Databases, _seed

#: the tenant read; it holds one in ``--tenants`` of the events
TENANT = "t0"
PAGE = 100
#: what each measured read filters on, beside the tenant and the cursor
FILTERS: dict[str, dict[str, Any]] = {
    "none": {},
    "status=error": {"status": "error"},
    "since 7 days": {"since": NOW - timedelta(days=7)},
}


def _item(i: int, tenants: int) -> dict[str, object]:
    """``bench.postgres``'s seed item ``i``, spread over ``tenants`` tenants."""
    subject = {"tenant": f"t{i % tenants}", "user": f"u{i % 50}"}
    status = "error" if (i // tenants) % 8 == 3 else "success"
    return _seed(i) | {"subject": subject, "status": status}


def seed(gov: Governor, events: int, tenants: int) -> float:
    """Record ``events`` calls in batches of 5000; returns the seconds it took."""
    start = time.perf_counter()
    for offset in range(0, events, 5000):
        gov.record_many([_item(i, tenants) for i in range(offset, min(events, offset + 5000))])
    return time.perf_counter() - start


def settle(dbs: _Databases, store: str, url: str) -> None:
    """Do what the store's background work would have done after a bulk load."""
    gc.collect()
    if store == "sqlite":
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'VACUUM ANALYZE "{dbs.schemas[-1]}".events')


def cursors(gov: Governor, reads: int, filters: dict[str, Any]) -> list[int]:
    """Cursor 0 and ``reads - 1`` random cursors a reader could hold: ids of the
    tenant's matching events, each with at least a full page after it."""
    ids: list[int] = []
    while page := gov.events(EventQuery(tenant=TENANT, after_id=ids[-1] if ids else 0,
                                        limit=10_000, **filters)):  # fmt: skip
        ids += [event.id or 0 for event in page]
    rng = random.Random(7)
    held = ids[: len(ids) - PAGE]
    return [0, *(rng.choice(held) for _ in range(reads - 1) if held)]


def pages(gov: Governor, reads: int, filters: dict[str, Any]) -> list[int]:
    """Nanoseconds of reading a page at each of ``cursors``."""
    chosen = cursors(gov, reads, filters)
    for cursor in chosen[:20]:  # warm-up: connections, prepared statements, page cache
        gov.events(EventQuery(tenant=TENANT, after_id=cursor, limit=PAGE, **filters))
    samples = []
    for cursor in chosen:
        query = EventQuery(tenant=TENANT, after_id=cursor, limit=PAGE, **filters)
        t0 = time.perf_counter_ns()
        gov.events(query)
        samples.append(time.perf_counter_ns() - t0)
    return samples


def measure(
    dbs: _Databases, store: str, events: int, tenants: int, reads: int, console: Console
) -> dict[str, tuple[float, float]]:
    """p50 and p99 page latency (µs) per filter, on a fresh store of ``events`` events."""
    url = dbs.url(store)
    with Governor(url, clock=lambda: NOW) as gov:
        took = seed(gov, events, tenants)
        settle(dbs, store, url)
        console.log(f"{store}: seeded {events:,} events in {took:.1f} s")
        found = {}
        for name, filters in FILTERS.items():
            samples = pages(gov, reads, filters)
            found[name] = (percentile(samples, 0.5), percentile(samples, 0.99))
    return found


def run(
    stores: list[str], sizes: list[int], tenants: int, reads: int, console: Console
) -> list[Table]:
    """Measure every store at every size; the latency table and the ratio table."""
    table = Table(title=f"one tenant's ledger, pages of {PAGE} at {reads} random cursors")
    for column in ("store", "events in store", "tenant's events", "filter", "p50 µs", "p99 µs"):
        table.add_column(column, justify="left" if column in ("store", "filter") else "right")
    results: dict[tuple[str, int], dict[str, tuple[float, float]]] = {}
    dbs = _Databases()
    try:
        for store in stores:
            for size in sizes:
                found = measure(dbs, store, size, tenants, reads, console)
                results[(store, size)] = found
                for name, (p50, p99) in found.items():
                    table.add_row(store, f"{size:,}", f"{size // tenants:,}", name,
                                  f"{p50:,.0f}", f"{p99:,.0f}")  # fmt: skip
    finally:
        dbs.close()
        shutil.rmtree(dbs.dir, ignore_errors=True)
    return [table, ratios(results, stores, sizes)]


def ratios(
    results: dict[tuple[str, int], dict[str, tuple[float, float]]], stores: list[str],
    sizes: list[int],
) -> Table:  # fmt: skip
    """Latency at the largest size over latency at the smallest, per store and filter."""
    big, small = max(sizes), min(sizes)
    table = Table(title=f"page latency at {big:,} events ÷ at {small:,} (goal ≤ 1.5)")
    for column in ("store", "filter", "p50 ratio", "p99 ratio"):
        table.add_column(column, justify="left" if column in ("store", "filter") else "right")
    for store in stores:
        for name in FILTERS:
            (b50, b99), (s50, s99) = results[(store, big)][name], results[(store, small)][name]
            table.add_row(store, name, f"{b50 / s50:.2f}", f"{b99 / s99:.2f}")
    return table


def main() -> None:
    """Parse arguments, run, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--events", default="10000,1000000", help="ledger sizes of the store")
    parser.add_argument("--pages", type=int, default=200, help="page reads per measurement")
    parser.add_argument("--tenants", type=int, default=10, help="tenants sharing the ledger")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 100))  # the titles are long
    sizes = [int(n) for n in args.events.split(",")]
    for table in run(args.stores.split(","), sizes, args.tenants, args.pages, console):
        console.print(table)


if __name__ == "__main__":
    main()
