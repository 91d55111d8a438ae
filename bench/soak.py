"""Soak: a mixed load on ``allotment serve`` for minutes, watching memory and the WAL.

Run with ``python -m bench.soak [--minutes 20]`` (fractions work: ``--minutes
0.5 --interval 10`` is a quick check). One ``allotment serve`` (SQLite, 2
workers) takes ``CLIENTS`` keep-alive clients working back to back, each call
drawn by ``WEIGHTS``: authorize, commit and release (of the client's own
oldest held reservation; an authorize when it holds none), status, usage and
a page of the ledger at a random cursor. Every interval (a minute) it prints
requests/s, p99 latency, each worker's resident memory and the size of the
write-ahead log. The verdict at the end:

- memory is flat after warm-up: over the last half of the intervals, each
  worker's RSS moves by at most 10 % of its mean;
- throughput holds: the last interval's requests/s are at least 0.8 of the
  second's (the first is warm-up).

The clients are ``bench.http``'s raw asyncio connections on uvloop: they
share the server's two cores, so they must stay cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvloop
from rich.console import Console
from rich.table import Table
from tests.e2e.server import ADMIN, Instance, service_key

from bench.http import Send, _connection

CLIENTS = 16
TENANT = "soak"
#: relative frequency of each call
WEIGHTS = {"authorize": 30, "commit": 25, "release": 5, "status": 15, "usage": 10, "events": 15}
#: at most this share of a worker's mean RSS between its min and max over the last half
RSS_SPREAD = 0.10
#: at least this share of the second interval's requests/s in the last
THROUGHPUT_KEPT = 0.8
_KINDS, _WEIGHTS = list(WEIGHTS), list(WEIGHTS.values())
#: most reservations a client holds at once (well inside their 300 s lifetime)
HELD = 32


@dataclass
class Interval:
    """What one interval saw: its latencies, failures, and the samples taken at its end."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    resets: int = 0
    seconds: float = 0.0
    rss_kb: dict[int, int] = field(default_factory=dict)
    wal_bytes: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99)] * 1000 if ordered else 0.0


class _Client:
    """One simulated caller: a service connection for calls, a viewer one for reads."""

    def __init__(self, worker: int, call: Send, read: Send, written: list[int]) -> None:
        self.rng = random.Random(worker)
        self.worker = worker
        self.call, self.read = call, read
        self.held: deque[str] = deque()
        self.made = 0
        self.written = written  # events written by every client (a shared counter)

    def pick(self) -> str:
        """The next call's kind, drawn by ``WEIGHTS`` (and holding 0 to ``HELD`` calls)."""
        kind = self.rng.choices(_KINDS, _WEIGHTS)[0]
        if kind in ("commit", "release") and not self.held:
            return "authorize"
        return "commit" if kind == "authorize" and len(self.held) >= HELD else kind

    async def step(self, kind: str) -> bool:
        """Make one call of ``kind``; whether it answered 200."""
        if kind == "authorize":
            return await self._authorize()
        if kind in ("commit", "release"):
            return await self._finish(kind)
        if kind == "status":
            return await self.call("GET", f"/v1/status?user=u{self.rng.randrange(50)}", None) == 200
        if kind == "usage":
            return await self.read("GET", "/v1/usage?by=user", None) == 200
        cursor = self.rng.randrange(self.written[0] + 1)
        return await self.read("GET", f"/v1/events?cursor={cursor}&limit=100", None) == 200

    async def _authorize(self) -> bool:
        self.made += 1
        rid = f"s{self.worker}-{self.made}-{self.rng.getrandbits(32):08x}"
        body = {"request_id": rid, "subject": {"tenant": TENANT, "user": f"u{self.made % 50}"},
                "provider": "openai", "model": "gpt-4o-mini",
                "estimate": {"output_tokens": 200}}  # fmt: skip
        if await self.call("POST", "/v1/authorize", body) != 200:
            return False
        self.held.append(rid)
        return True

    async def _finish(self, kind: str) -> bool:
        rid = self.held.popleft()
        body: dict[str, object] = {"request_id": rid}
        if kind == "commit":
            body["usage"] = {"input_tokens": 120, "output_tokens": 80}
        self.written[0] += 1
        return await self.call("POST", f"/v1/{kind}", body) == 200


def workers_of(server: int) -> list[int]:
    """The pids of the uvicorn workers under the server process (not its helpers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue  # a process that just ended
        if int(fields[1]) == server and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` in kB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _keys(base: str) -> tuple[str, str]:
    """A budget, a service key and a viewer key of ``TENANT``."""
    budget = {"id": "day", "tenant": TENANT, "meter": "tokens", "window": "day", "limit": 10**15}
    service = service_key(base, TENANT, budget)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        made = admin.post("/v1/keys", json={"role": "viewer", "tenant": TENANT})
        made.raise_for_status()
        return service, str(made.json()["secret"])


async def _soak(port: int, keys: tuple[str, str], seconds: float, interval: float,
                sample: Callable[[Interval], None], report: Callable[[int, Interval], None]
                ) -> tuple[list[Interval], dict[str, list[float]]]:  # fmt: skip
    """Run the clients for ``seconds``; the intervals (each sampled and reported as it
    ends) and the latencies of each kind of call over the whole run."""
    start = time.perf_counter()
    count = max(1, math.ceil(seconds / interval - 1e-9))
    intervals = [Interval() for _ in range(count)]
    by_kind: dict[str, list[float]] = {kind: [] for kind in WEIGHTS}
    written = [0]

    async def connect() -> tuple[Send, Send, Callable[[], None]]:
        call, close_call = await _connection(port, f"Authorization: Bearer {keys[0]}\r\n".encode())
        read, close_read = await _connection(port, f"Authorization: Bearer {keys[1]}\r\n".encode())
        return call, read, lambda: (close_call(), close_read())

    async def client(worker: int) -> None:
        call, read, close = await connect()
        me = _Client(worker, call, read, written)
        end = start + seconds
        while (began := time.perf_counter()) < end:
            kind = me.pick()
            slot = intervals[min(count - 1, int((began - start) / interval))]
            try:
                ok = await me.step(kind)
            except OSError:  # the server dropped the connection: count it, reconnect
                slot.resets += 1
                close()
                me.call, me.read, close = await connect()
                continue
            done = time.perf_counter()
            slot.latencies.append(done - began)
            by_kind[kind].append(done - began)
            slot.failures += not ok
        close()

    async def watch() -> None:
        for i, slot in enumerate(intervals):
            ends = start + min(seconds, (i + 1) * interval)
            await asyncio.sleep(max(0.0, ends - time.perf_counter()))
            slot.seconds = min(seconds, (i + 1) * interval) - i * interval
            sample(slot)
            report(i, slot)

    await asyncio.gather(watch(), *(client(w) for w in range(CLIENTS)))
    return intervals, by_kind


def verdict(intervals: list[Interval]) -> list[str]:
    """The two checks, each as a line saying whether it held and by how much."""
    if len(intervals) < 3:
        return ["verdict: needs at least 3 intervals (run longer)"]
    lines = []
    last_half = intervals[len(intervals) // 2 :]
    for pid in sorted({pid for s in last_half for pid in s.rss_kb}):
        values = [s.rss_kb[pid] for s in last_half if s.rss_kb.get(pid)]
        spread = (max(values) - min(values)) / (sum(values) / len(values))
        whole = len(values) == len(last_half)  # a worker that came or went was restarted
        held = "PASS" if spread <= RSS_SPREAD and whole else "FAIL"
        lines.append(f"{held} worker {pid} RSS over {len(values)} of the last {len(last_half)} "
                     f"intervals: {min(values) / 1024:.1f}-{max(values) / 1024:.1f} MiB, spread "
                     f"{spread:.1%} of its mean (limit {RSS_SPREAD:.0%})")  # fmt: skip
    kept = intervals[-1].rate / intervals[1].rate
    held = "PASS" if kept >= THROUGHPUT_KEPT else "FAIL"
    lines.append(f"{held} throughput: last interval {intervals[-1].rate:,.0f} req/s = {kept:.2f} "
                 f"x the second's {intervals[1].rate:,.0f} (limit {THROUGHPUT_KEPT})")  # fmt: skip
    return lines


def table(intervals: list[Interval], pids: list[int], interval: float) -> Table:
    """Every interval as a row."""
    out = Table(title=f"soak: {CLIENTS} clients, allotment serve (SQLite, 2 workers)")
    columns = ["end (min)", "req/s", "p99 ms", "failed", "dropped", *(f"RSS {p} MiB" for p in pids),
               "WAL MiB"]  # fmt: skip
    for column in columns:
        out.add_column(column, justify="right")
    for i, slot in enumerate(intervals):
        rss = (f"{slot.rss_kb.get(p, 0) / 1024:.1f}" for p in pids)
        out.add_row(f"{(i * interval + slot.seconds) / 60:.2f}", f"{slot.rate:,.0f}",
                    f"{slot.p99_ms:.1f}", str(slot.failures), str(slot.resets), *rss,
                    f"{slot.wal_bytes / 2**20:.1f}")  # fmt: skip
    return out


def kinds(by_kind: dict[str, list[float]]) -> Table:
    """Count, p50 and p99 of each kind of call over the whole run."""
    out = Table(title="each kind of call, whole run")
    for column in ("call", "count", "p50 ms", "p99 ms"):
        out.add_column(column, justify="left" if column == "call" else "right")
    for kind, latencies in by_kind.items():
        ordered = sorted(latencies) or [0.0]
        out.add_row(kind, f"{len(latencies):,}", f"{ordered[len(ordered) // 2] * 1000:.1f}",
                    f"{ordered[int(len(ordered) * 0.99)] * 1000:.1f}")  # fmt: skip
    return out


def _server_log(instance: Instance) -> list[str]:
    """What the server printed so far (its stdout and stderr)."""
    log = instance._log
    log.seek(0)
    return log.read().decode(errors="replace").splitlines()


def main() -> None:
    """Start the service, soak it, print the intervals and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per row")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 100))
    db = Path(tempfile.mkdtemp(prefix="allotment-soak-")) / "soak.db"
    instance = Instance(f"sqlite:///{db}", workers=2)
    try:
        pids = workers_of(instance.process.pid)
        console.log(f"server {instance.process.pid}, workers {pids}, database {db}")

        def sample(slot: Interval) -> None:
            slot.rss_kb = {pid: rss_kb(pid) for pid in workers_of(instance.process.pid)}
            wal = db.with_name(db.name + "-wal")
            slot.wal_bytes = wal.stat().st_size if wal.exists() else 0

        def report(i: int, slot: Interval) -> None:
            rss = ", ".join(f"{pid}: {kb / 1024:.1f} MiB" for pid, kb in slot.rss_kb.items())
            console.log(f"interval {i + 1}: {slot.rate:,.0f} req/s, p99 {slot.p99_ms:.1f} ms, "
                        f"{slot.failures} failed, {slot.resets} dropped connections, RSS {rss}, "
                        f"WAL {slot.wal_bytes / 2**20:.1f} MiB")  # fmt: skip

        port = int(instance.base.rsplit(":", 1)[1])
        keys = _keys(instance.base)
        soak = _soak(port, keys, args.minutes * 60, args.interval, sample, report)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            intervals, by_kind = runner.run(soak)
        if any(s.failures or s.resets for s in intervals):
            console.print("server output, last lines:", *_server_log(instance)[-30:], sep="\n")
    finally:
        instance.stop()
        shutil.rmtree(db.parent, ignore_errors=True)
    console.print(table(intervals, sorted({p for s in intervals for p in s.rss_kb}), args.interval))
    console.print(kinds(by_kind))
    for line in verdict(intervals):
        console.print(line)


if __name__ == "__main__":
    main()
