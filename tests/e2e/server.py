"""Start a real ``allotment serve`` process on a free loopback port (tests and benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ADMIN = "ak_0123456789ab_e2e-admin-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(base: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll ``base``'s ``/readyz`` until it answers 200 (True), or ``process`` exits or
    ``timeout`` seconds pass (False). Every 50 ms: a server is ready within about a
    second, and each start of the suite's many waited 100 ms more on average at 0.2 s."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1) as client:
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if client.get(f"{base}/readyz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    return False


class Instance:
    """One ``allotment serve`` process group (the uvicorn master and its workers)."""

    def __init__(self, db: str, workers: int = 2, timeout: float = 30) -> None:
        port = free_port()
        script = Path(sys.executable).parent / "allotment"
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [str(script), "serve", "--port", str(port), "--workers", str(workers), "--db", db],
            env=os.environ | {"ALLOTMENT_ADMIN_KEY": ADMIN},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() takes the workers too
        )
        self.base = f"http://127.0.0.1:{port}"
        if not wait_until_ready(self.base, self.process, timeout):
            self._log.seek(0)
            output = self._log.read().decode(errors="replace")[-4000:]
            self.stop()
            raise RuntimeError(f"allotment serve did not become ready:\n{output}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by every process of the group."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # a process that just ended
            if int(fields[2]) == self.process.pid:  # its process group
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL the whole group: no shutdown, no cleanup, as a crashed machine."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)

    def stop(self) -> None:
        """Shut down gracefully (SIGTERM); a group already killed is left alone."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self._log.close()


@contextmanager
def serve(db: str, workers: int = 2, timeout: float = 30) -> Iterator[str]:
    """Run ``allotment serve`` on ``db``; yields its base URL; stops it afterwards."""
    instance = Instance(db, workers, timeout)
    try:
        yield instance.base
    finally:
        instance.stop()


def service_key(base: str, tenant: str, budget: dict[str, object]) -> str:
    """Create ``budget`` and a service key of ``tenant`` through the admin key."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        admin.post("/v1/budgets", json=budget).raise_for_status()
        made = admin.post("/v1/keys", json={"role": "service", "tenant": tenant})
        made.raise_for_status()
        secret: str = made.json()["secret"]
        return secret
