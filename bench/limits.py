"""Rate limit and lease benchmark (issue 19): pairs/s with and without them, as ratios.

``python -m bench.limits`` measures each part in one run, its configurations in
alternating rounds (a noisy neighbour slows them alike), and shows medians:

- ``sqlite``: authorize+commit pairs/s, in-process SQLite, with a 60-second
  rolling ``requests`` budget against a ``day`` budget of the same meter.
  Goal: rolling / day >= 0.7.
- ``service``: the same through two ``allotment serve`` instances (2 workers
  each) on one PostgreSQL schema, keep-alive clients spread over both, each
  configuration a tenant with its own service key. Goal: >= 0.7.
- ``postgres``: the same in this process: two Governors on one PostgreSQL
  schema, threads spread over both. Goal: >= 0.7.
- ``leases``: in-process SQLite, authorize counted by a concurrency budget +
  release (a lease taken and given back), and lease authorize+commit, against
  authorize+commit on a plain ``day`` tokens budget. Goal: lease+release / plain
  >= 0.8 (lease+commit's ratio is shown, without a goal).

A rolling window is measured full, as under steady traffic: every one of its
~60 buckets holds usage, so each admission sums them all. In-process, each
configuration has a clock of its own that runs only during its rounds, and a
warm-up spreads calls over the minute before the first round. Through the
service (real clocks), a keeper thread makes a call on every configuration
twice a second for the whole run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table
from tests.e2e.server import Instance

from allotment import Governor
from bench.http import CLIENTS, Send, run_clients

SERVER = os.environ.get("ALLOTMENT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ESTIMATE = {"input_tokens": 100}
USAGE = {"input_tokens": 100}
#: each configuration's budget (its tenant is the configuration's name)
BUDGETS: dict[str, dict[str, object]] = {
    "rolling": {"id": "rpm", "meter": "requests", "window": "rolling:60", "limit": 10**12},
    "day": {"id": "rpd", "meter": "requests", "window": "day", "limit": 10**12},
    "plain": {"id": "tokens", "meter": "tokens", "window": "day", "limit": 10**14},
    "lease+release": {"id": "slots", "meter": "concurrency", "window": "lifetime",
                      "limit": 10**9},
    "lease+commit": {"id": "slots", "meter": "concurrency", "window": "lifetime",
                     "limit": 10**9},
}  # fmt: skip
#: how each configuration ends its call
RELEASES = {"lease+release"}
#: per part: the baseline configuration and each measured one's goal (its ratio to the
#: baseline; None: shown, no goal)
PARTS: dict[str, tuple[str, dict[str, float | None]]] = {
    "sqlite": ("day", {"rolling": 0.7}),
    "service": ("day", {"rolling": 0.7}),
    "postgres": ("day", {"rolling": 0.7}),
    "leases": ("plain", {"lease+release": 0.8, "lease+commit": None}),
}
#: the rolling window's length; warm-up calls are spread over it
WINDOW = timedelta(seconds=60)


def _budget(config: str) -> dict[str, object]:
    return {**BUDGETS[config], "tenant": config}


def _subject(config: str, user: str = "u0") -> dict[str, str]:
    return {"tenant": config, "user": user}


class Clock:
    """A Governor's clock that runs only inside ``running()``, as if it had the machine
    to itself: its rolling window fills as under steady traffic, whatever the other
    configurations' rounds in between. Outside ``running()`` it stands at ``at``."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)
        self._since: float | None = None

    def __call__(self) -> datetime:
        if self._since is None:
            return self.at
        return self.at + timedelta(seconds=time.perf_counter() - self._since)

    @contextmanager
    def running(self) -> Iterator[None]:
        self._since = time.perf_counter()
        try:
            yield
        finally:
            self.at, self._since = self(), None


def _pair(gov: Governor, config: str, user: str = "u0") -> None:
    rid = uuid.uuid4().hex
    decision = gov.authorize(rid, _subject(config, user), "openai", "m", ESTIMATE)
    assert decision.allowed, decision
    if config in RELEASES:
        gov.release(rid)
    else:
        gov.commit(rid, USAGE)


def _fill(govs: Sequence[Governor], clock: Clock, config: str) -> None:
    """Warm up with two calls a second over the minute before the clock's time: every
    bucket of a rolling window then holds usage (the same calls for every configuration)."""
    start = clock.at
    for i in range(120):
        clock.at = start - WINDOW + i * WINDOW / 120
        _pair(govs[i % len(govs)], config)
    clock.at = start


Result = tuple[float, ...]


def _alternate(runs: Mapping[str, Callable[[], Result]], rounds: int) -> dict[str, Result]:
    """Run each configuration ``rounds`` times, in turn; the median of each measure."""
    found: dict[str, list[Result]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            found[name].append(run())
    return {
        name: tuple(statistics.median(column) for column in zip(*results, strict=True))
        for name, results in found.items()
    }


def _table(
    part: str, title: str, measures: Sequence[str], medians: dict[str, Result],
    caption: str | None = None,
) -> Table:  # fmt: skip
    """One row per configuration: its medians; its pairs/s (the first measure) as a ratio
    to the baseline's, next to the goal; and its pairs per CPU second's ratio, if measured."""
    baseline, goals = PARTS[part]
    cpu = measures.index("pairs/CPU-s") if "pairs/CPU-s" in measures else None
    table = Table(title=title, caption=caption)
    table.add_column("configuration")
    for column in (*measures, "ratio", "goal", "", *(["CPU ratio"] if cpu else [])):
        table.add_column(column, justify="right")
    for name, values in medians.items():
        ratio = values[0] / medians[baseline][0]
        goal = goals.get(name)
        verdict = "" if goal is None else "met" if ratio >= goal else "MISSED"
        cells = [f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for v in values]
        cells += [f"{ratio:.2f}", "" if goal is None else f">= {goal}", verdict]
        if cpu:
            cells.append(f"{values[cpu] / medians[baseline][cpu]:.2f}")
        table.add_row(name, *cells)
    return table


# in-process SQLite: rolling vs day, leases vs plain


def _in_process_round(gov: Governor, clock: Clock, config: str, n: int) -> Result:
    """``n`` pairs; pairs per second of wall time and of this process's CPU time."""
    start, cpu = time.perf_counter(), time.process_time()
    with clock.running():
        for _ in range(n):
            _pair(gov, config)
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def sqlite_part(part: str, rounds: int, pairs: int) -> Table:
    """In-process SQLite, each configuration on a fresh database file."""
    baseline, goals = PARTS[part]
    configs = [baseline, *goals]
    with tempfile.TemporaryDirectory(prefix="allotment-limits-") as tmp:
        govs, clocks = {}, {}
        for config in configs:
            clocks[config] = Clock()
            govs[config] = Governor(f"sqlite:///{Path(tmp) / uuid.uuid4().hex}.db",
                                    clock=clocks[config])  # fmt: skip
            govs[config].create_budget(_budget(config))
            _fill([govs[config]], clocks[config], config)
        try:
            runs = {c: (lambda c=c: _in_process_round(govs[c], clocks[c], c, pairs))
                    for c in configs}  # fmt: skip
            medians = _alternate(runs, rounds)
        finally:
            for gov in govs.values():
                gov.close()
    what = "authorize+commit" if part == "sqlite" else "lease and authorize+commit"
    title = f"{what} pairs/s, in-process SQLite, median of {rounds} rounds of {pairs}"
    return _table(part, title, ["pairs/s", "pairs/CPU-s"], medians)


# PostgreSQL


@contextmanager
def _schema() -> Iterator[str]:
    """A store URL on a new PostgreSQL schema, dropped afterwards."""
    name = f"bench_limits_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{SERVER}?schema={name}"
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _threaded_round(
    pool: ThreadPoolExecutor, threads: int, govs: Sequence[Governor], clock: Clock, config: str,
    n: int,
) -> Result:  # fmt: skip
    """``n`` pairs over ``threads`` threads of ``pool``, thread ``t`` on ``govs[t % len(govs)]``."""

    def work(t: int) -> None:
        for _ in range(n // threads):
            _pair(govs[t % len(govs)], config, f"u{t}")

    start = time.perf_counter()
    with clock.running():
        list(pool.map(work, range(threads)))
    return (n // threads * threads / (time.perf_counter() - start),)


def postgres_part(rounds: int, pairs: int, threads: int) -> Table:
    """Two Governors per configuration on one schema, ``threads`` threads over both."""
    baseline, goals = PARTS["postgres"]
    configs = [baseline, *goals]
    with _schema() as url, ThreadPoolExecutor(threads) as pool:
        clocks = {c: Clock() for c in configs}
        govs = {c: [Governor(f"{url}&pool={threads}", clock=clocks[c]) for _ in range(2)]
                for c in configs}  # fmt: skip
        try:
            for config in configs:
                govs[config][0].create_budget(_budget(config))
                _fill(govs[config], clocks[config], config)
            runs = {c: (lambda c=c: _threaded_round(pool, threads, govs[c], clocks[c], c, pairs))
                    for c in configs}  # fmt: skip
            medians = _alternate(runs, rounds)
        finally:
            for pair in govs.values():
                for gov in pair:
                    gov.close()
    title = (f"authorize+commit pairs/s, two Governors on one PostgreSQL schema, {threads} "
             f"threads, median of {rounds} rounds of {pairs}")  # fmt: skip
    return _table("postgres", title, ["pairs/s"], medians)


# through two allotment serve instances on one PostgreSQL schema


def _postgres_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL process on this machine (the
    server's backends are shared with whatever else uses it)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, fields = stat.read_text().split(" (", 1)[1].rsplit(")", 1)
        except (OSError, IndexError, ValueError):
            continue  # a process that just ended
        if name.startswith("postgres"):
            values = fields.split()
            total += int(values[11]) + int(values[12])
    return total / os.sysconf("SC_CLK_TCK")


def _drive(
    ports: list[int], auth: bytes, config: str, clients: int, warmup: float, seconds: float,
    cpus: Sequence[Callable[[], float]],
) -> Result:  # fmt: skip
    """Authorize+commit pairs on ``clients`` keep-alive connections, client ``w`` on
    ``ports[w % len(ports)]``, for ``warmup + seconds``; only pairs that start after the
    warm-up and end in the window count. Pairs/s, p50 ms, and each of ``cpus``' CPU
    seconds over the window in µs per pair."""
    token = uuid.uuid4().hex[:8]  # request ids unique across rounds

    async def pair(send: Send, worker: int, i: int) -> None:
        rid = f"{token}-{worker}-{i}"
        call: dict[str, object] = {"request_id": rid, "subject": _subject(config, f"u{worker}"),
                "provider": "openai", "model": "m", "estimate": ESTIMATE}  # fmt: skip
        status = await send("POST", "/v1/authorize", call)
        assert status == 200, f"authorize answered {status}"
        status = await send("POST", "/v1/commit", {"request_id": rid, "usage": USAGE})
        assert status == 200, f"commit answered {status}"

    latencies, used = run_clients(
        ports, auth, pair, cpus, clients=clients, warmup=warmup, seconds=seconds
    )
    count = len(latencies)
    return count / seconds, latencies[count // 2] * 1000, *(u / count * 1e6 for u in used)


@contextmanager
def _keeper(url: str, configs: Sequence[str]) -> Iterator[None]:
    """A thread that makes a call on every configuration twice a second: each bucket of
    a rolling window holds usage, whichever configuration's round is running."""
    stop = threading.Event()

    def keep() -> None:
        with Governor(url) as gov:
            while not stop.wait(0.5):
                for config in configs:
                    _pair(gov, config, "keeper")

    thread = threading.Thread(target=keep, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def service_part(
    rounds: int, clients: int, warmup: float, seconds: float, console: Console
) -> Table:
    """Two ``allotment serve`` instances, 2 workers each, on one schema; each
    configuration a tenant with its own budget and service key."""
    baseline, goals = PARTS["service"]
    configs = [baseline, *goals]
    with _schema() as url:
        url = f"{url}&pool=4"
        auths = {}
        clock = Clock()
        with Governor(url, clock=clock) as gov:
            for config in configs:
                gov.create_budget(_budget(config))
                _, secret = gov.create_key("service", tenant=config)
                auths[config] = f"Authorization: Bearer {secret}\r\n".encode()
                _fill([gov], clock, config)  # the minute up to now; the keeper goes on
        instances: list[Instance] = []
        try:
            with ThreadPoolExecutor(2) as pool:  # started together, as a rollout would
                futures = [pool.submit(Instance, url, 2) for _ in range(2)]
            instances = [f.result() for f in futures if f.exception() is None]
            for failed in (f.exception() for f in futures):
                if failed is not None:
                    raise failed
            ports = [int(i.base.rsplit(":", 1)[1]) for i in instances]
            cpus = [lambda: sum(i.cpu_seconds() for i in instances), _postgres_cpu]
            with _keeper(url, configs):
                for config in configs:  # warm-up: connections, caches
                    _drive(ports, auths[config], config, clients, 0.5, 1.0, cpus)
                console.log("service: instances up, warmed up; measuring")
                runs = {c: (lambda c=c: _drive(ports, auths[c], c, clients, warmup, seconds,
                                               cpus)) for c in configs}  # fmt: skip
                medians = _alternate(runs, rounds)
        finally:
            for instance in instances:
                instance.stop()
    title = (
        f"authorize+commit pairs/s through 2 allotment serve instances x 2 workers on one "
        f"PostgreSQL schema, {clients} clients, median of {rounds} rounds of {seconds:g} s"
    )
    measures = ["pairs/s", "p50 ms", "serve CPU µs/pair", "PostgreSQL CPU µs/pair"]
    caption = "PostgreSQL CPU: every postgres process on this machine, whoever it serves"
    return _table("service", title, measures, medians, caption)


def main() -> None:
    """Print a table per part."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts",
        default="sqlite,leases,postgres,service",
        help="which parts, comma-separated: sqlite, leases, postgres, service",
    )
    parser.add_argument("--rounds", type=int, default=31, help="in-process rounds, alternating")
    parser.add_argument("--pairs", type=int, default=300, help="pairs per in-process round")
    parser.add_argument("--threads", type=int, default=8, help="threads of the postgres part")
    parser.add_argument(
        "--service-rounds", type=int, default=8, help="rounds through the service, alternating"
    )
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="measured seconds per service round"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="unmeasured seconds at the start of each service round",
    )
    parser.add_argument("--clients", type=int, default=CLIENTS, help="service clients")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {sorted(PARTS)}")
    console = Console(width=max(Console().width, 120))
    for part in parts:
        if part in ("sqlite", "leases"):
            table = sqlite_part(part, args.rounds, args.pairs)
        elif part == "postgres":
            table = postgres_part(args.rounds, args.pairs, args.threads)
        else:
            table = service_part(args.service_rounds, args.clients, args.warmup, args.seconds,
                                 console)  # fmt: skip
        console.print(table)


if __name__ == "__main__":
    main()
