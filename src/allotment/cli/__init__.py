"""The ``allotment`` command line: budgets, credit pools, plans, status, usage, records,
keys, the service, a demo.

Each command opens what it works on and closes it before returning: a
``Governor`` on ``--db`` (default ``$ALLOTMENT_DB`` or
``sqlite:///allotment.db``), or, with ``--url`` / ``$ALLOTMENT_URL``, the
running service through ``allotment.client.Client`` (see
``allotment.cli._target``). So commands can be scripted against a shared
SQLite file while services use it too, or against a remote service.

Errors are one red ``error: …`` line naming the field, exit status 2 for bad
input and 1 for an unreachable store or service (``allotment.cli._group``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from allotment.cli._group import Group
from allotment.cli.budgets import budgets_app
from allotment.cli.calls import authorize, commit, heartbeat, record, release, status, usage
from allotment.cli.credits import credits_app
from allotment.cli.keys import keys_app
from allotment.cli.maintenance import db_app, ledger_app
from allotment.cli.plans import plans_app
from allotment.cli.prices import prices_app
from allotment.cli.rates import rates_app
from allotment.cli.replay import replay
from allotment.cli.serve import demo, serve

__all__ = ["app"]

app = typer.Typer(
    cls=Group,
    name="allotment",
    help="A budget in front of every AI call.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from allotment import __version__

        typer.echo(f"allotment {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """A budget in front of every AI call."""


for command in (
    status, usage, record, authorize, heartbeat, commit, release, replay, serve, demo
):  # fmt: skip
    app.command()(command)
for group, name in (
    (budgets_app, "budgets"), (credits_app, "credits"), (plans_app, "plans"),
    (ledger_app, "ledger"), (prices_app, "prices"), (rates_app, "rates"), (keys_app, "keys"),
    (db_app, "db"),
):  # fmt: skip
    app.add_typer(group, name=name)
