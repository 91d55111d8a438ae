"""Credit pool benchmark (issue 18): authorize+commit pairs/s, plain budget vs a pool.

``python -m bench.credits`` measures, on SQLite, in one run and interleaved:

- plain: one cost budget with room to spare;
- pool: a period budget whose allowance is spent, with 10 grants behind it,
  so every call draws on the grants (and reads them all).

The goal is a ratio pool / plain of at least 0.7. Many short rounds alternate
so that a noisy neighbour slows both alike; the table shows the median of each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from allotment import Governor

SUBJECT = {"tenant": "bench", "user": "u0"}
USAGE = {"input_tokens": 100}


def _clock() -> datetime:
    return datetime.now(UTC)


def plain(url: str) -> Governor:
    gov = Governor(url, clock=_clock)
    gov.create_budget({"id": "month", "tenant": "bench", "meter": "tokens", "window": "month",
                       "limit": 10**14})  # fmt: skip
    return gov


def pool(url: str, grants: int) -> Governor:
    gov = Governor(url, clock=_clock)
    gov.create_budget({"id": "month", "tenant": "bench", "meter": "tokens", "window": "month",
                       "limit": 100, "credits": True})  # fmt: skip
    gov.record("spend-allowance", SUBJECT, "openai", "m", {"input_tokens": 100})
    for i in range(grants):
        gov.add_grant("month", 10**12, priority=i % 3, grant_id=f"g{i}")
    return gov


def pairs(gov: Governor, n: int) -> tuple[float, float]:
    """``n`` authorize+commit pairs; pairs per second of wall time and of this process's
    CPU time (which a busy neighbour on a shared machine does not slow)."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        rid = uuid.uuid4().hex
        decision = gov.authorize(rid, SUBJECT, "openai", "m", USAGE)
        assert decision.allowed, decision
        gov.commit(rid, USAGE)
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=300, help="pairs per round")
    parser.add_argument("--rounds", type=int, default=31, help="rounds, alternating")
    parser.add_argument("--grants", type=int, default=10)
    parser.add_argument("--memory", action="store_true", help="the memory store, not SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {name: "memory://" if args.memory else f"sqlite:///{Path(tmp) / name}.db"
                for name in ("plain", "pool")}  # fmt: skip
        govs = {"plain": plain(urls["plain"]), "pool": pool(urls["pool"], args.grants)}
        for gov in govs.values():
            pairs(gov, 200)  # warm-up
        wall: dict[str, list[float]] = {name: [] for name in govs}
        cpu: dict[str, list[float]] = {name: [] for name in govs}
        for _ in range(args.rounds):
            for name, gov in govs.items():
                per_wall, per_cpu = pairs(gov, args.pairs)
                wall[name].append(per_wall)
                cpu[name].append(per_cpu)
        for gov in govs.values():
            gov.close()
    medians = {name: statistics.median(values) for name, values in wall.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    store = "memory" if args.memory else "SQLite"
    table = Table(title=f"authorize+commit pairs/s, {store}, median of {args.rounds} rounds")
    table.add_column("budget")
    table.add_column("pairs/s", justify="right")
    table.add_column("ratio to plain", justify="right")
    table.add_column("pairs/CPU-s", justify="right")
    table.add_column("CPU ratio", justify="right")
    for name, value in medians.items():
        per_cpu = cpu_medians[name]
        table.add_row(name, f"{value:,.0f}", f"{value / medians['plain']:.2f}",
                      f"{per_cpu:,.0f}", f"{per_cpu / cpu_medians['plain']:.2f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
