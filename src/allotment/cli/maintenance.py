"""``allotment ledger`` and ``db``: work on the database itself (local only).

None of these has an HTTP endpoint; with ``--url`` (or ``$ALLOTMENT_URL``)
they say so in one line and ask for ``--db``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from allotment._render import format_money, make_console
from allotment.cli._group import Group
from allotment.cli._input import instant
from allotment.cli._options import ApiKey, Db, TenantOpt, Url
from allotment.cli._target import local, target
from allotment.config import redact_url

__all__ = ["db_app", "ledger_app"]

ledger_app = typer.Typer(
    cls=Group, help="Maintain the ledger and the counters derived from it.", no_args_is_help=True
)
db_app = typer.Typer(cls=Group, help="The database schema.", no_args_is_help=True)


@ledger_app.command("rebuild")
def ledger_rebuild(db: Db = None, url: Url = None, api_key: ApiKey = None) -> None:
    """Recompute every counter from the ledger (after a restore or a budget change)."""
    with local(target(db, url, api_key), "ledger rebuild") as gov:
        stats = gov.rebuild()
    make_console().print(f"read {stats.events} events, wrote {stats.counters} counters")


@db_app.command("upgrade")
def db_upgrade(db: Db = None, url: Url = None, api_key: ApiKey = None) -> None:
    """Apply pending schema migrations (every command and the service also do on start)."""
    with local(target(db, url, api_key), "db upgrade") as gov:
        version = getattr(gov.store, "schema_version", None)
        store_url = gov.store.url
        message = "nothing to migrate" if version is None else f"schema at version {version()}"
    make_console().print(f"{redact_url(store_url)}: {message}", markup=False)


@ledger_app.command("archive")
def ledger_archive(
    before: Annotated[str, typer.Option("--before", help="Events before this (ISO; whole hour).")],
    to: Annotated[Path, typer.Option("--to", help="New file to write (.jsonl.gz).")],
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Move old events into a gzip JSON-lines file; counters and usage reports keep them."""
    cutoff = instant(before, "--before")
    assert cutoff is not None
    with local(target(db, url, api_key), "ledger archive") as gov:
        stats = gov.archive(cutoff, to)
    make_console().print(
        f"archived {stats.events} events to {to}; forgot {stats.request_ids} finished request ids",
        markup=False,
    )


@ledger_app.command("reprice")
def ledger_reprice(
    since: Annotated[str, typer.Option("--since", help="From (ISO, inclusive).")],
    until: Annotated[str, typer.Option("--until", help="To (ISO, exclusive).")],
    model: Annotated[str | None, typer.Option(help="Only this model (globs allowed).")] = None,
    tenant: TenantOpt = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Recompute costs after a price correction; each event keeps its previous cost."""
    start, end = instant(since, "--since"), instant(until, "--until")
    assert start is not None and end is not None
    with local(target(db, url, api_key), "ledger reprice") as gov:
        stats = gov.reprice(start, end, model=model, tenant=tenant)
    make_console().print(
        f"repriced {stats.changed} of {stats.events} calls, cost changed by "
        f"{format_money(stats.delta_micros, 'USD')}",
        markup=False,
    )
