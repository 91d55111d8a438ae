"""A real ``allotment serve`` process (2 workers, uvicorn) on loopback, driven over HTTP."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from allotment.errors import ConfigurationError
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.e2e.server import ADMIN, free_port, serve, service_key, wait_until_ready

N = 150
CLIENTS = 64


def test_serve_end_to_end(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path / 'serve.db'}") as base:
        budget = {"id": "d", "tenant": "acme", "meter": "requests", "window": "day", "limit": 20}
        headers = {"Authorization": f"Bearer {service_key(base, 'acme', budget)}"}
        allowed = 0
        for i in range(25):  # new connections, spread over both workers
            with httpx.Client(base_url=base, headers=headers) as one:
                body = {"request_id": f"r{i}", "subject": {"tenant": "acme"},
                        "provider": "openai", "model": "gpt-4o-mini"}  # fmt: skip
                response = one.post("/v1/authorize", json=body)
                if response.status_code == 200:
                    allowed += 1
                    one.post("/v1/commit", json={"request_id": f"r{i}", "usage": {}})
                else:
                    assert response.status_code == 402
        assert allowed == 20
        with httpx.Client(base_url=base, headers=headers) as service:
            status = service.get("/v1/status").json()["budgets"][0]
            assert (status["used"], status["state"]) == (20, "exceeded")
            assert "x-request-id" in service.get("/healthz").headers
            metrics = service.get("/metrics").text  # both workers' counts, added up
            assert 'allotment_decisions_total{outcome="allowed",reason=""} 20.0' in metrics
            assert "allotment_reservations_in_flight 0" in metrics


async def _client(base: str, headers: dict[str, str], worker: int, attempts: int) -> int:
    allowed = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for i in range(attempts):
            rid = f"w{worker}-{i}"
            body = {"request_id": rid, "subject": {"tenant": "acme", "user": f"u{worker}"},
                    "provider": "openai", "model": "gpt-4o-mini",
                    "estimate": {"output_tokens": 100}}  # fmt: skip
            response = await client.post("/v1/authorize", json=body)
            if response.status_code == 200:
                allowed += 1
                usage = {"request_id": rid, "usage": {"output_tokens": 100}}
                (await client.post("/v1/commit", json=usage)).raise_for_status()
            else:
                assert response.status_code == 402, response.text
    return allowed


@pytest.mark.slow
def test_64_concurrent_clients_exactly_n_through_http(tmp_path: Path) -> None:
    """Invariant 1 through the service: 2 workers, 64 keep-alive clients, one budget."""
    with serve(f"sqlite:///{tmp_path / 'race.db'}") as base:
        budget = {"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day",
                  "limit": N * 100}  # fmt: skip
        headers = {"Authorization": f"Bearer {service_key(base, 'acme', budget)}"}

        async def race() -> list[int]:
            return await asyncio.gather(*(_client(base, headers, w, 4) for w in range(CLIENTS)))

        assert sum(asyncio.run(race())) == N  # 256 attempts for 150 slots
        with httpx.Client(base_url=base, headers=headers) as service:
            status = service.get("/v1/status").json()["budgets"][0]
            assert (status["used"], status["reserved"]) == (N * 100, 0)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=base, headers=admin) as reader:
            ledger = reader.get("/v1/events", params={"tenant": "acme", "status": "success",
                                                      "limit": 1000}).json()["events"]  # fmt: skip
        assert len(ledger) == N
        assert sum(e["usage"]["output_tokens"] for e in ledger) == N * 100


# --- the first hour: the demo is kept, its key shown last ------------------------------------


@contextmanager
def _serving(db: str, *flags: str, env: dict[str, str] | None = None) -> Iterator[Started]:
    """``allotment serve`` until it answers (or exits): its base URL and what it printed."""
    port = free_port()
    script = Path(sys.executable).parent / "allotment"
    environ = {k: v for k, v in os.environ.items() if k != "ALLOTMENT_ADMIN_KEY"} | (env or {})
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(script), "serve", "--port", str(port), "--db", db, *flags],
            env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(base, process, timeout=30)
            log.seek(0)
            lines = [line for line in log.read().decode().splitlines() if line.strip()]
            yield Started(base, lines)
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=15)


class Started(NamedTuple):
    base: str
    lines: list[str]


def _status(base: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.get(f"{base}/v1/status", params={"tenant": "port-a"}, headers=headers)
    return response.status_code


def _events(db: str) -> int:
    with Governor(db) as gov:
        return len(gov.events(EventQuery(limit=10_000)))


def test_the_demo_and_its_key_survive_a_restart(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'allotment.db'}"
    key_file = tmp_path / "allotment.db.admin-key"
    with _serving(db, "--demo") as (base, lines):
        serving, shown, curl, cli = lines[-4:]  # the last lines before serving
        key = shown.split()[2]
        assert _status(base, key) == 200
    assert serving.startswith(f"allotment: serving {db} on {base}")
    assert shown == f"admin key: {key}  (saved in {key_file})" and key.startswith("ak_")
    assert curl == (f'try: curl -H "Authorization: Bearer {key}" '
                    f'"{base}/v1/status?tenant=port-a"')  # fmt: skip
    assert cli.endswith(f"status --tenant port-a --db {db}")
    assert key_file.read_text().strip() == key and key_file.stat().st_mode & 0o777 == 0o600

    events = _events(db)
    with _serving(db, "--demo") as (base, again):  # a restart keeps the data and the key
        assert again[0].startswith("kept the demo already in") and again[-3].split()[2] == key
        assert _status(base, key) == 200
    assert _events(db) == events

    with _serving(db, "--demo", "--reset") as (base, fresh):
        new_key = fresh[-3].split()[2]
        assert new_key != key and key_file.read_text().strip() == new_key
        assert (_status(base, key), _status(base, new_key)) == (401, 200)


def test_a_first_start_prints_its_new_key_last(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'plain.db'}"
    with _serving(db) as (base, lines):
        key = lines[-2].split()[2]
        assert lines[-2].startswith(f"admin key: {key}  (shown once, not saved")
        assert lines[-1] == f'try: curl -H "Authorization: Bearer {key}" "{base}/v1/budgets"'
    with _serving(db) as (_, again):
        assert "admin key" not in " ".join(again)  # shown once


def test_a_weak_admin_key_is_refused_in_one_line(tmp_path: Path) -> None:
    weak = {"ALLOTMENT_ADMIN_KEY": "changeme"}
    with _serving(f"sqlite:///{tmp_path / 'weak.db'}", env=weak) as (_, lines):
        pass
    assert lines == [
        "error: ALLOTMENT_ADMIN_KEY: must be 16 to 256 characters (got 8); use a generated one, "
        "e.g. `openssl rand -hex 16`"
    ]


def test_any_long_enough_admin_key_is_adopted(tmp_path: Path) -> None:
    secret = "correct-horse-battery-staple"
    db = f"sqlite:///{tmp_path / 'own.db'}"
    with _serving(db, env={"ALLOTMENT_ADMIN_KEY": secret}) as (base, lines):
        assert lines[-2] == "admin key: $ALLOTMENT_ADMIN_KEY  (from the environment)"
        assert lines[-1] == (f'try: curl -H "Authorization: Bearer $ALLOTMENT_ADMIN_KEY" '
                             f'"{base}/v1/budgets"')  # fmt: skip
        assert secret not in "\n".join(lines)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}) as admin:
            [key] = admin.get("/v1/keys").json()["keys"]
            assert key["role"] == "admin" and len(key["id"]) == 12
    with Governor(db) as gov:
        assert gov.authenticate(secret + "x") is None


def test_serve_finds_the_server_extra_without_importing_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The master of ``--workers 2`` does not import what only its workers run: ready
    in 1.2 s, not 3.2 s. A missing part of the extra is named."""
    command = importlib.import_module("allotment.cli.serve")  # the module, not the command

    code = "import sys; from allotment.cli.serve import _server; _server(); "
    code += "print('allotment.api.app' in sys.modules, 'fastapi' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
    monkeypatch.setattr(command, "SERVER_EXTRA", (*command.SERVER_EXTRA, "no_such_module"))
    with pytest.raises(ConfigurationError, match=r"no_such_module is missing.*allotment\[server\]"):
        command._server()
