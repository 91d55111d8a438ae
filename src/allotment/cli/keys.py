"""``allotment keys``: the service's API keys, on the store or through the service."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from allotment._render import make_console, print_json
from allotment.cli._group import Group
from allotment.cli._options import ApiKey, AsJson, Db, Url
from allotment.cli._target import backend, target

__all__ = ["keys_app"]

keys_app = typer.Typer(cls=Group, help="API keys of the HTTP service.", no_args_is_help=True)


@keys_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="admin, tenant_admin, service or viewer.")],
    tenant: Annotated[str | None, typer.Option(help="The key's tenant (not for admin).")] = None,
    name: Annotated[str | None, typer.Option(help="A label.")] = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Create a key and print its secret (shown only this once)."""
    with backend(target(db, url, api_key), priced=False) as gov:
        key, secret = gov.create_key(role, tenant, name)
    make_console().print(f"{key.id} {key.role} {key.tenant or '*'}", markup=False)
    typer.echo(secret)


@keys_app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """List keys (never their secrets)."""
    with backend(target(db, url, api_key), priced=False) as gov:
        keys = [dict(k.to_dict()) for k in gov.list_keys(tenant)]
    if as_json:
        print_json(keys)
        return
    columns = ("id", "role", "tenant", "name", "created_at", "last_used_at", "revoked_at")
    table = Table(*columns)
    for k in keys:
        table.add_row(*(str(k.get(c) or "") for c in columns))
    make_console().print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="Key id.")],
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Revoke a key at once."""
    with backend(target(db, url, api_key), priced=False) as gov:
        gov.revoke_key(key_id)
    make_console().print(f"revoked {key_id}", markup=False)
