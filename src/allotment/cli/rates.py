"""``allotment rates``: exchange rates for budgets kept in other currencies, locally or
through the service (setting one takes an admin key there)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from allotment._render import make_console, print_json
from allotment.cli._group import Group
from allotment.cli._input import instant
from allotment.cli._options import ApiKey, AsJson, Db, Url
from allotment.cli._target import backend, target

__all__ = ["rates_app"]

rates_app = typer.Typer(
    cls=Group, help="Exchange rates for budgets kept in other currencies.", no_args_is_help=True
)


@rates_app.command("set")
def rates_set(
    source: Annotated[str, typer.Option("--source", help="From this currency, e.g. USD.")],
    target_: Annotated[str, typer.Option("--target", help="To this currency, e.g. EUR.")],
    rate: Annotated[str, typer.Option("--rate", help="Units of target per unit of source.")],
    since: Annotated[str | None, typer.Option("--from", help="Effective from (ISO).")] = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Set an exchange rate (cost budgets in either currency are recounted)."""
    with backend(target(db, url, api_key)) as gov:
        saved = gov.set_rate(source, target_, rate, instant(since, "--from"))
    make_console().print(
        f"1 {saved.source} = {saved.rate} {saved.target} from {saved.effective_from.isoformat()}",
        markup=False,
    )


@rates_app.command("list")
def rates_list(
    as_json: AsJson = False, db: Db = None, url: Url = None, api_key: ApiKey = None
) -> None:
    """List the exchange rates."""
    with backend(target(db, url, api_key)) as gov:
        rates = gov.rates()
    rows = [
        {"source": r.source, "target": r.target, "rate": str(r.rate),
         "effective_from": r.effective_from.isoformat()}
        for r in rates
    ]  # fmt: skip
    if as_json:
        print_json(rows)
        return
    table = Table("source", "target", "rate", "effective_from")
    for row in rows:
        table.add_row(*row.values())
    make_console().print(table)
