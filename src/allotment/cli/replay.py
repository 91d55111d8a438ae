"""``allotment replay``: proposed budgets over the ledger, against the current ones (local only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from allotment._render import format_money, make_console, print_json, replay_table
from allotment.cli._input import instant
from allotment.cli._options import ApiKey, AsJson, Db, TenantOpt, Url
from allotment.cli._target import local, target
from allotment.config import load_budget_specs
from allotment.replay import replay as replay_ledger

__all__ = ["replay"]


def replay(
    budgets: Annotated[
        Path, typer.Option("--budgets", help="YAML/TOML with the proposed budgets.")
    ],
    since: Annotated[str, typer.Option("--since", help="From (ISO, inclusive).")],
    until: Annotated[str, typer.Option("--until", help="To (ISO, exclusive).")],
    tz: Annotated[str, typer.Option("--tz", help="Time zone of the report's days.")] = "UTC",
    tenant: TenantOpt = None,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Replay proposed budgets over the ledger, counterfactually, against the current ones.

    Each call the ledger counts is asked again at its time with what it used; a
    call a policy refuses counts toward nothing later. Per day and tenant: what
    the current and the proposed budgets would have refused, and its spend.
    Credit pools, plans and leases are not replayed.
    """
    start, end = instant(since, "--since"), instant(until, "--until")
    assert start is not None and end is not None
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(f"unknown time zone {tz!r}", param_hint="--tz") from None
    proposed = load_budget_specs(budgets)
    with local(target(db, url, api_key), "replay") as gov:
        report = replay_ledger(gov, proposed, since=start, until=end, tz=zone, tenant=tenant)
    if as_json:
        print_json(report.to_dict())
        return
    console = make_console()
    console.print(replay_table(report))
    avoided = sum(r.proposed_refused_micros for r in report.rows)
    refused = sum(r.proposed_refused for r in report.rows)
    by = ", ".join(
        f"{budget or 'no budget'} {n:,}" for budget, n in report.refused_by.most_common()
    )
    console.print(f"proposed: {refused:,} calls refused, {format_money(avoided, report.currency)} "
                  f"avoided{f' (by {by})' if by else ''}", markup=False)  # fmt: skip
    if report.not_replayed:
        console.print(f"not replayed (credit pools): {', '.join(report.not_replayed)}",
                      markup=False)  # fmt: skip
