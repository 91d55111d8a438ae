"""``allotment serve`` and ``allotment demo``: the HTTP service, and the demo it can serve.

What a first start must show cannot scroll away: the admin key, and a
ready-to-paste ``curl`` line using it, are the last lines printed before
the service answers (the demo's tables come before them).

The demo keeps its database between starts, and its admin key with it: keys
are stored hashed, so the demo's is also kept in a file beside the database
(``allotment.db.admin-key``, mode 0600) and shown again on every start.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.console import Console

from allotment._render import make_console
from allotment.cli._input import instant
from allotment.cli._options import Db
from allotment.config import DEFAULT_DB, db_url, redact_url
from allotment.core.keys import Role
from allotment.demo import demo_file, run_demo
from allotment.errors import ConfigurationError, ValidationError
from allotment.governor import Governor
from allotment.settings import Settings, build_governor

__all__ = ["demo", "serve"]

ADMIN_KEY_ENV = "ALLOTMENT_ADMIN_KEY"
TOPUP_GATEWAY_ENV = "ALLOTMENT_TOPUP_GATEWAY"
Seed = Annotated[int, typer.Option(help="Seed of the simulated day.")]
Reset = Annotated[
    bool, typer.Option("--reset", help="Simulate the demo afresh (else an earlier one is kept).")
]


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Processes on the same store.")] = 1,
    config: Annotated[
        str | None, typer.Option(help="YAML/TOML with budgets, rates and pricing.")
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Serve the demo: tenants and a day of traffic.")
    ] = False,
    reset: Reset = False,
    db: Db = None,
) -> None:
    """Run the HTTP service (uvicorn with uvloop and httptools).

    With --demo and no ALLOTMENT_TOPUP_GATEWAY, auto top-ups are paid by the test gateway.
    """
    if reset and not demo:
        raise typer.BadParameter("only with --demo", param_hint="--reset")
    uvicorn = _server()
    url = db_url(db)
    console = make_console()
    if demo:
        if demo_file(url) is None:
            raise ConfigurationError(
                "the served demo needs a SQLite file, e.g. --db sqlite:///x.db"
            )
        run_demo(url, 7, console, datetime.now(UTC), reset=reset)
        if not os.environ.get(TOPUP_GATEWAY_ENV, "").strip():  # the demo's pool tops up
            os.environ[TOPUP_GATEWAY_ENV] = "test"
            console.print(f"auto top-ups are paid by the test gateway (set {TOPUP_GATEWAY_ENV} "
                          "to use yours)", markup=False)  # fmt: skip
    os.environ["ALLOTMENT_DB"] = url
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="allotment-metrics-")
    if config:
        os.environ["ALLOTMENT_CONFIG"] = config
    with build_governor(Settings.from_env(db=url), pricer=None) as gov:  # before any worker
        key = _admin_key(gov, _key_file(url) if demo else None)
    base = f"http://{_loopback(host)}:{port}"
    console.print()
    console.print(f"allotment: serving {redact_url(url)} on {base} (Ctrl-C stops it)", markup=False)
    _print_key(console, key, base, url, demo)
    sys.stdout.flush()  # before uvicorn takes over, even when stdout is a pipe
    uvicorn.run(
        "allotment.api.app:build_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
    )


#: What the ``server`` extra brings that the service imports (the library does without it).
SERVER_EXTRA = ("uvicorn", "uvloop", "httptools", "fastapi", "fastapi_offline", "prometheus_client")


def _server() -> ModuleType:
    """uvicorn, once the ``server`` extra is known to be installed.

    Found, not imported: with ``--workers`` above 1 only the workers import the
    service (uvicorn starts each afresh), and importing it here too made every
    such start a second slower.
    """
    missing = next((name for name in SERVER_EXTRA if find_spec(name) is None), None)
    if missing is not None:
        raise ConfigurationError(
            f"the service needs the server extra ({missing} is missing): "
            "pip install 'allotment[server]'"
        )
    import uvicorn

    return uvicorn


def demo(
    db: Db = None,
    seed: Seed = 7,
    reset: Reset = False,
    now: Annotated[
        str | None, typer.Option(help="Simulate up to this time (ISO; default: now).")
    ] = None,
) -> None:
    """Simulate a day of a CRM, a cost gateway and an agent orchestrator, then report.

    The day runs up to now, into the CLI's database; a database that already
    holds the demo is kept (--reset simulates afresh). `allotment serve --demo`
    serves it.
    """
    when = instant(now, "--now") or datetime.now(UTC)
    run_demo(db_url(db), seed, make_console(), when, reset=reset)


# --- the admin key ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    """The admin key to show: what curl sends (None: nothing usable), and where it lives."""

    bearer: str | None
    where: str


def _key_file(url: str) -> Path | None:
    path = demo_file(url)
    return None if path is None else path.with_name(f"{path.name}.admin-key")


def _admin_key(gov: Governor, saved: Path | None) -> _Key | None:
    """The admin key of a first start ($ALLOTMENT_ADMIN_KEY or a new one), or the demo's.

    The service's workers would create the first key themselves; creating it
    here, once, lets its secret be printed last (``api.app.bootstrap_admin_key``
    then finds a key and does nothing).
    """
    given = os.environ.get(ADMIN_KEY_ENV) or None
    if given is not None:
        return _adopted(gov, given)
    if saved is not None:
        return _demo_key(gov, saved)
    secret = gov.create_first_key()
    if secret is None:
        return None
    return _Key(secret, "shown once, not saved: keep it; `allotment keys create` makes more")


def _adopted(gov: Governor, given: str) -> _Key:
    """``$ALLOTMENT_ADMIN_KEY``: adopted on a first start; refused in one line if too weak."""
    try:
        created = gov.create_first_key(given)
    except ValidationError as exc:
        raise ValidationError(ADMIN_KEY_ENV, exc.message) from None
    if created is None and gov.authenticate(given) is None:
        return _Key(None, f"${ADMIN_KEY_ENV} is not a key of this database: it is adopted "
                          "only by a first start, on a database with no keys")  # fmt: skip
    return _Key(f"${ADMIN_KEY_ENV}", "from the environment")


def _demo_key(gov: Governor, saved: Path) -> _Key:
    """The demo's admin key: the one saved beside the database while it still works."""
    if saved.exists():
        secret = saved.read_text(encoding="utf-8").strip()
        key = gov.authenticate(secret) if secret else None
        if key is not None and key.role is Role.ADMIN and key.revoked_at is None:
            return _Key(secret, f"saved in {saved}")
    secret = gov.create_first_key() or gov.create_key("admin", None, "demo")[1]
    _write_private(saved, secret)
    return _Key(secret, f"saved in {saved}")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600, even if it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")


def _print_key(console: Console, key: _Key | None, base: str, url: str, demo: bool) -> None:
    """The last lines before serving: the admin key and a curl line that uses it."""
    if key is None:
        return
    if key.bearer is None:
        console.print(f"note: {key.where}", style="yellow", markup=False, soft_wrap=True)
        return
    console.print(f"admin key: {key.bearer}  ({key.where})", markup=False, soft_wrap=True)
    path = "/v1/status?tenant=port-a" if demo else "/v1/budgets"
    curl = f'curl -H "Authorization: Bearer {key.bearer}" "{base}{path}"'
    console.print(f"try: {curl}", markup=False, soft_wrap=True)
    if demo:
        db = "" if url == DEFAULT_DB else f" --db {url}"
        console.print(f"or:  {_cli()} status --tenant port-a{db}", markup=False, soft_wrap=True)


def _cli() -> str:
    """How to run this CLI from here: ``allotment`` if it is on PATH, else its path."""
    if shutil.which("allotment"):
        return "allotment"
    script = Path(sys.argv[0])
    return str(script) if script.name == "allotment" else "allotment"


def _loopback(host: str) -> str:
    """Where a local curl reaches a service listening on ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
