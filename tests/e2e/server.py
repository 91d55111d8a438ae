"""Start a real ``allotment serve`` process on a free loopback port (tests and benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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


@contextmanager
def serve(db: str, workers: int = 2, timeout: float = 30) -> Iterator[str]:
    """Run ``allotment serve`` on ``db``; yields its base URL; stops it afterwards."""
    port = free_port()
    script = Path(sys.executable).parent / "allotment"
    process = subprocess.Popen(
        [str(script), "serve", "--port", str(port), "--workers", str(workers), "--db", db],
        env=os.environ | {"ALLOTMENT_ADMIN_KEY": ADMIN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("allotment serve did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def service_key(base: str, tenant: str, budget: dict[str, object]) -> str:
    """Create ``budget`` and a service key of ``tenant`` through the admin key."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        admin.post("/v1/budgets", json=budget).raise_for_status()
        made = admin.post("/v1/keys", json={"role": "service", "tenant": tenant})
        made.raise_for_status()
        secret: str = made.json()["secret"]
        return secret
