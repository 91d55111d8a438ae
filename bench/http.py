"""HTTP benchmark: authorize+commit pairs/s through ``allotment serve``, 64 clients.

Run with ``python -m bench.http`` (part of ``make bench``). The server (SQLite,
1 and 2 workers) and the load generator share this machine's cores, so the
generator is kept lean: 64 keep-alive HTTP/1.1 connections on raw asyncio
streams over uvloop (httpx itself topped out near 600 requests/s here).
``/healthz`` on the same server in the same run is the baseline.

Every client runs pairs back to back for ``WARMUP + MEASURE`` seconds; only
pairs that start after the warm-up and end within the window count. The
warm-up takes the start-up burst (64 connections opened at once, first-use
caches) out of the steady-state figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import orjson
import uvloop
from rich.console import Console
from rich.table import Table
from tests.e2e.server import Instance, service_key

CLIENTS = 64
WARMUP = 1.5
MEASURE = 5.0
Send = Callable[[str, str, dict[str, object] | None], Awaitable[int]]
#: one client's unit of work (a pair, or a health check), on its connection
Work = Callable[[Send, int, int], Awaitable[None]]


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, parsed by hand.

    A raw protocol rather than asyncio streams: the generator shares the
    server's two cores, so every µs it spends is taken from the server.
    """

    def __init__(self, auth: bytes) -> None:
        self.auth = auth
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower() + b"\r\n"
        at = head.find(b"content-length:")
        length = 0 if at < 0 else int(head[at + 15 : head.find(b"\r\n", at)])
        if len(buffer) < end + 4 + length:
            return
        status = int(buffer[9:12])
        del buffer[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("closed"))

    async def send(self, method: str, path: str, body: dict[str, object] | None) -> int:
        data = b"" if body is None else orjson.dumps(body)
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(
            b"%s %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n%s"
            % (method.encode(), path.encode(), len(data), self.auth, data)
        )
        return await self.waiter


async def _connection(port: int, auth: bytes) -> tuple[Send, Callable[[], None]]:
    loop = asyncio.get_running_loop()
    transport, connection = await loop.create_connection(
        lambda: _Connection(auth), "127.0.0.1", port
    )
    return connection.send, transport.close


def run_clients(
    ports: list[int],
    auth: bytes,
    work: Work,
    cpus: Sequence[Callable[[], float]] = (),
    *,
    clients: int = CLIENTS,
    warmup: float = WARMUP,
    seconds: float = MEASURE,
) -> tuple[list[float], list[float]]:
    """Run ``work`` back to back on ``clients`` keep-alive connections, client ``w`` on
    ``ports[w % len(ports)]``, for ``warmup + seconds``.

    Returns the seconds each unit of work took, sorted, of those that started after
    the warm-up and ended in the window; and the CPU seconds each of ``cpus`` (a
    CPU-seconds reading) counted in the window.
    """
    latencies: list[float] = []
    readings: list[list[float]] = []

    async def read_cpus() -> None:
        await asyncio.sleep(warmup)
        readings.append([cpu() for cpu in cpus])
        await asyncio.sleep(seconds)
        readings.append([cpu() for cpu in cpus])

    async def client(worker: int, begin: float, end: float) -> None:
        send, close = await _connection(ports[worker % len(ports)], auth)
        i = 0
        while (started := time.perf_counter()) < end:
            await work(send, worker, i)
            done = time.perf_counter()
            if started >= begin and done <= end:
                latencies.append(done - started)
            i += 1
        close()

    async def run() -> None:
        begin = time.perf_counter() + warmup
        others = (client(w, begin, begin + seconds) for w in range(clients))
        await asyncio.gather(read_cpus(), *others)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())
    latencies.sort()
    return latencies, [after - before for before, after in zip(*readings, strict=True)]


def drive(
    ports: list[int], auth: bytes, work: Work, cpu: Callable[[], float] = lambda: 0.0
) -> tuple[float, float, float, float, float]:
    """Run ``work`` back to back on ``CLIENTS`` connections (``run_clients``); units/s, p50 ms,
    p99 ms, the CPU µs per unit that ``cpu`` (a CPU-seconds reading) counted in the
    window, and the CPU µs per unit of this generator itself."""
    latencies, (served, own) = run_clients(ports, auth, work, (cpu, time.process_time))
    count = len(latencies)
    return (
        count / MEASURE,
        latencies[count // 2] * 1000,
        latencies[int(count * 0.99)] * 1000,
        served / count * 1e6,
        own / count * 1e6,
    )


async def _pair(send: Send, worker: int, i: int) -> None:
    rid = f"b{worker}-{i}"
    call = {
        "request_id": rid,
        "subject": {"tenant": "bench", "user": f"u{worker}"},
        "provider": "openai",
        "model": "gpt-4o-mini",
        "estimate": {"output_tokens": 200},
    }
    authorized = await send("POST", "/v1/authorize", call)
    usage = {"request_id": rid, "usage": {"input_tokens": 120, "output_tokens": 80}}
    committed = await send("POST", "/v1/commit", usage)
    assert (authorized, committed) == (200, 200)


async def _health(send: Send, worker: int, i: int) -> None:
    assert await send("GET", "/healthz", None) == 200


def measure(workers: int) -> tuple[float, float, float, float, float, float]:
    """pairs/s, p50 ms, p99 ms, server and client CPU µs per pair, /healthz requests/s."""
    db = f"sqlite:///{Path(tempfile.mkdtemp(prefix='allotment-http-')) / 'h.db'}"
    instance = Instance(db, workers)
    try:
        port = int(instance.base.rsplit(":", 1)[1])
        budget = {"id": "day", "tenant": "bench", "meter": "tokens", "window": "day",
                  "limit": 10**12}  # fmt: skip
        auth = f"Authorization: Bearer {service_key(instance.base, 'bench', budget)}\r\n"
        health = drive([port], b"", _health)[0]
        rate, p50, p99, cpu, client = drive([port], auth.encode(), _pair, instance.cpu_seconds)
    finally:
        instance.stop()
    return rate, p50, p99, cpu, client, health


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="runs per worker count, interleaved; the table adds each column's median",
    )  # fmt: skip
    args = parser.parse_args()
    runs: dict[int, list[tuple[float, ...]]] = {1: [], 2: []}
    for _ in range(args.repeat):  # interleaved, so a slow spell of the machine hits both
        for workers, found in runs.items():
            found.append(measure(workers))
    table = Table(title=f"allotment over HTTP: {CLIENTS} concurrent keep-alive clients, SQLite")
    for column in ("workers", "pairs/s", "p50 ms", "p99 ms", "server CPU µs/pair",
                   "client CPU µs/pair", "/healthz req/s", "pairs/s ÷ healthz req/s"):  # fmt: skip
        table.add_column(column, justify="right")
    for workers, found in runs.items():
        rows = [(str(workers), run) for run in found]
        if len(found) > 1:
            medians = tuple(statistics.median(column) for column in zip(*found, strict=True))
            rows.append((f"{workers} median", medians))
        for label, (rate, p50, p99, cpu, client, health) in rows:
            table.add_row(label, f"{rate:,.0f}", f"{p50:.1f}", f"{p99:.1f}", f"{cpu:,.0f}",
                          f"{client:,.0f}", f"{health:,.0f}", f"{rate / health:.2f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
