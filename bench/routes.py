"""Route benchmark (issue 19): authorize+commit pairs/s, three route candidates vs one.

``python -m bench.routes`` measures, on SQLite, in one run and interleaved:

- one: an authorize with a single route, one day budget with room to spare;
- three: an authorize with three route candidates of which the first two are
  exhausted (each one's sub-cap is spent), so every call is decided three
  times in its transaction and reserved on the third.

The goal is a ratio three / one of at least 0.6. Many short rounds alternate
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
ROUTES = [
    {"provider": "openai", "model": "gpt-4o-mini", "backend": "a"},
    {"provider": "anthropic", "model": "claude-3-5-haiku", "backend": "b"},
    {"provider": "openai", "model": "gpt-4o-mini", "backend": "own"},
]


def _clock() -> datetime:
    return datetime.now(UTC)


def governor(url: str) -> Governor:
    gov = Governor(url, clock=_clock)
    gov.create_budget({"id": "day", "tenant": "bench", "meter": "tokens", "window": "day",
                       "limit": 10**14})  # fmt: skip
    for backend in ("a", "b"):  # the first two candidates' sub-caps: spent
        gov.create_budget({"id": backend, "tenant": "bench", "meter": "tokens", "window": "day",
                           "limit": 0, "match": {"backend": backend}})  # fmt: skip
    return gov


def pairs(gov: Governor, n: int, routes: list[dict[str, str]]) -> tuple[float, float]:
    """``n`` authorize+commit pairs over ``routes``; pairs per second of wall time and of
    this process's CPU time (which a busy neighbour on a shared machine does not slow)."""
    start, cpu = time.perf_counter(), time.process_time()
    first = routes[0]
    for _ in range(n):
        rid = uuid.uuid4().hex
        decision = gov.authorize(
            rid, SUBJECT, first["provider"], first["model"], USAGE, routes=routes
        )
        assert decision.allowed, decision
        gov.commit(rid, USAGE)
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=300, help="pairs per round")
    parser.add_argument("--rounds", type=int, default=31, help="rounds, alternating")
    args = parser.parse_args()
    cases = {"one": [ROUTES[2]], "three": ROUTES}
    with tempfile.TemporaryDirectory() as tmp:
        govs = {name: governor(f"sqlite:///{Path(tmp) / name}.db") for name in cases}
        for name, gov in govs.items():
            pairs(gov, 200, cases[name])  # warm-up
        wall: dict[str, list[float]] = {name: [] for name in govs}
        cpu: dict[str, list[float]] = {name: [] for name in govs}
        for _ in range(args.rounds):
            for name, gov in govs.items():
                per_wall, per_cpu = pairs(gov, args.pairs, cases[name])
                wall[name].append(per_wall)
                cpu[name].append(per_cpu)
        for gov in govs.values():
            gov.close()
    medians = {name: statistics.median(values) for name, values in wall.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    table = Table(title=f"authorize+commit pairs/s, SQLite, median of {args.rounds} rounds")
    table.add_column("routes")
    table.add_column("pairs/s", justify="right")
    table.add_column("ratio to one (goal ≥ 0.6)", justify="right")
    table.add_column("pairs/CPU-s", justify="right")
    table.add_column("CPU ratio", justify="right")
    for name, value in medians.items():
        per_cpu = cpu_medians[name]
        table.add_row(name, f"{value:,.0f}", f"{value / medians['one']:.2f}",
                      f"{per_cpu:,.0f}", f"{per_cpu / cpu_medians['one']:.2f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
