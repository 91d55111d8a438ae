"""``allotment serve`` and ``allotment keys``: the HTTP service and its API keys."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from typing import Annotated

import typer
import uvicorn
from rich.table import Table

from allotment._render import make_console, print_json
from allotment.api.app import bootstrap_admin_key
from allotment.config import db_url
from allotment.governor import Governor

__all__ = ["keys_app", "serve"]

keys_app = typer.Typer(help="API keys of the HTTP service.", no_args_is_help=True)
Db = Annotated[
    str | None,
    typer.Option("--db", help="Store URL (default: $ALLOTMENT_DB or sqlite:///allotment.db)."),
]


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Processes on the same store.")] = 1,
    config: Annotated[
        str | None, typer.Option(help="YAML/TOML with budgets, rates and pricing.")
    ] = None,
    demo: Annotated[bool, typer.Option(help="Seed demo tenants and a day of traffic.")] = False,
    db: Db = None,
) -> None:
    """Run the HTTP service (uvicorn with uvloop and httptools)."""
    if demo:
        from allotment.demo import DEMO_DB, run_demo

        db = db or DEMO_DB
        run_demo(db, 7, make_console(), datetime.now(UTC).date())
    url = db_url(db)
    os.environ["ALLOTMENT_DB"] = url
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="allotment-metrics-")
    if config:
        os.environ["ALLOTMENT_CONFIG"] = config
    with Governor(url) as gov:  # once, before any worker starts
        bootstrap_admin_key(gov)
    make_console().print(f"allotment: serving {url} on http://{host}:{port}", markup=False)
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


@keys_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="admin, tenant_admin, service or viewer.")],
    tenant: Annotated[str | None, typer.Option(help="The key's tenant (not for admin).")] = None,
    name: Annotated[str | None, typer.Option(help="A label.")] = None,
    db: Db = None,
) -> None:
    """Create a key and print its secret (shown only this once)."""
    with Governor(db_url(db)) as gov:
        key, secret = gov.create_key(role, tenant, name)
    make_console().print(f"{key.id} {key.role.value} {key.tenant or '*'}", markup=False)
    typer.echo(secret)


@keys_app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    db: Db = None,
) -> None:
    """List keys (never their secrets)."""
    with Governor(db_url(db)) as gov:
        keys = [k.to_dict() for k in gov.list_keys(tenant)]
    if as_json:
        print_json(keys)
        return
    columns = ("id", "role", "tenant", "name", "created_at", "last_used_at", "revoked_at")
    table = Table(*columns)
    for k in keys:
        table.add_row(*(str(k[c] or "") for c in columns))
    make_console().print(table)


@keys_app.command("revoke")
def revoke(key_id: str, db: Db = None) -> None:
    """Revoke a key at once."""
    with Governor(db_url(db)) as gov:
        gov.revoke_key(key_id)
    make_console().print(f"revoked {key_id}", markup=False)
