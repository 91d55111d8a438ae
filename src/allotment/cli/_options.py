"""Options several commands share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = [
    "Agent", "ApiKey", "AsJson", "Currency", "Db", "Feature", "Groups", "Install", "Key", "Model",
    "Owner", "Pairs", "Provider", "Tags", "Tenant", "TenantOpt", "Url", "User",
]  # fmt: skip

Db = Annotated[
    str | None,
    typer.Option(
        "--db", help="Store URL (default: $ALLOTMENT_DB or sqlite:///allotment.db).",
        rich_help_panel="Where",
    ),
]  # fmt: skip
Url = Annotated[
    str | None,
    typer.Option(
        "--url", help="A running service instead of a store (default: $ALLOTMENT_URL).",
        rich_help_panel="Where",
    ),
]  # fmt: skip
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key", help="The service's API key (default: $ALLOTMENT_API_KEY).",
        rich_help_panel="Where",
    ),
]  # fmt: skip
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Currency = Annotated[
    str | None,
    typer.Option("--currency", help="Currency of costs (default: USD; with --url, the service's)."),
]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")]
Tenant = Annotated[str, typer.Option("--tenant", help="The tenant.")]
Owner = Annotated[
    str | None,
    typer.Option("--tenant", help="Whose request id it is (needed when several tenants use it)."),
]
User = Annotated[str | None, typer.Option("--user")]
Groups = Annotated[
    list[str] | None, typer.Option("--group", "--groups", help="A group; repeatable.")
]
Key = Annotated[str | None, typer.Option("--key", help="The provider key used.")]
Agent = Annotated[str | None, typer.Option("--agent")]
Feature = Annotated[str | None, typer.Option("--feature")]
Install = Annotated[str | None, typer.Option("--install", help="The install (a plan member).")]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="name=value; repeatable.")]
Provider = Annotated[str | None, typer.Option("--provider")]
Model = Annotated[str | None, typer.Option("--model")]
Pairs = Annotated[list[str] | None, typer.Option(help="dim=value; repeatable.")]
