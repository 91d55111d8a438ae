"""The ``allotment`` command line: budget admin, status, usage, post-hoc records, a demo.

Every command opens its own ``Governor`` on ``--db`` (default ``$ALLOTMENT_DB``
or ``sqlite:///allotment.db``) and closes it before returning, so commands can
be scripted against a shared SQLite file while services use it too.

Errors allotment raises on purpose (bad input, unknown ids, an unreachable
store) are the operator's to fix, not bugs: they print one red ``error:`` line
on stderr and exit with status 2, never a traceback. Bad option syntax is left
to Typer, which also exits with 2.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from allotment._render import (
    budgets_table,
    format_money,
    make_console,
    print_json,
    status_table,
    usage_json,
    usage_table,
)
from allotment.cli_prices import prices_app
from allotment.cli_serve import keys_app, serve
from allotment.config import db_url, redact_url
from allotment.errors import AllotmentError
from allotment.governor import Governor

__all__ = ["app"]


class _Group(TyperGroup):
    """The root group: turns any ``AllotmentError`` into one red line and exit 2.

    Catching here, around every subcommand, keeps the commands free of
    try/except and makes sure no error of ours ever reaches the user as a
    traceback.
    """

    def invoke(self, ctx: Any) -> Any:  # ctx is Typer's vendored click Context
        try:
            return super().invoke(ctx)
        except AllotmentError as exc:
            message = " ".join(str(exc).split())  # one line, even for YAML parse errors
            make_console(stderr=True).print(Text(f"error: {message}", style="red"), soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    name="allotment",
    help="A budget in front of every AI call.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
budgets_app = typer.Typer(help="Create, list and delete budgets.", no_args_is_help=True)
ledger_app = typer.Typer(help="Maintain the ledger and the counters derived from it.")
app.add_typer(budgets_app, name="budgets")
app.add_typer(ledger_app, name="ledger")
app.add_typer(prices_app, name="prices")
rates_app = typer.Typer(help="Exchange rates for budgets kept in other currencies.")
app.add_typer(rates_app, name="rates")
app.add_typer(keys_app, name="keys")
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.command()(serve)

Db = Annotated[
    str | None,
    typer.Option("--db", help="Store URL (default: $ALLOTMENT_DB or sqlite:///allotment.db)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Currency = Annotated[str, typer.Option("--currency", help="Currency of costs shown/recorded.")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")]
Tenant = Annotated[str, typer.Option("--tenant", help="The tenant.")]
User = Annotated[str | None, typer.Option("--user")]
Groups = Annotated[list[str] | None, typer.Option("--group", help="A group; repeatable.")]
Key = Annotated[str | None, typer.Option("--key", help="The provider key used.")]
Agent = Annotated[str | None, typer.Option("--agent")]
Feature = Annotated[str | None, typer.Option("--feature")]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="name=value; repeatable.")]
Provider = Annotated[str | None, typer.Option("--provider")]
Model = Annotated[str | None, typer.Option("--model")]
Pairs = Annotated[list[str] | None, typer.Option(help="dim=value; repeatable.")]

# --- input helpers -------------------------------------------------------------


@contextmanager
def _governor(db: str | None, currency: str = "USD") -> Iterator[Governor]:
    with Governor(db_url(db), currency=currency) as gov:
        yield gov


def _pairs(values: list[str] | None, option: str) -> dict[str, list[str]] | None:
    """``["group=a", "group=b", "user=x"]`` -> ``{"group": ["a", "b"], "user": ["x"]}``."""
    if not values:
        return None
    out: dict[str, list[str]] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise typer.BadParameter(f"expected name=value, got {item!r}", param_hint=option)
        out.setdefault(name, []).append(value)
    return out


def _subject(tenant: str, tags: list[str] | None, **dims: Any) -> dict[str, Any]:
    subject = {"tenant": tenant, **{k: v for k, v in dims.items() if v}}
    tag_values = _pairs(tags, "--tag") or {}
    if tag_values:
        subject["tags"] = {name: values[-1] for name, values in tag_values.items()}
    return subject


def _instant(value: str | None, option: str) -> datetime | None:
    """ISO 8601 text as an aware datetime; a date or a naive time is taken as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        message = f"not an ISO 8601 date or time: {value!r}"
        raise typer.BadParameter(message, param_hint=option) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --- budgets ---------------------------------------------------------------------


@budgets_app.command("list")
def budgets_list(tenant: TenantOpt = None, as_json: AsJson = False, db: Db = None) -> None:
    """List budgets (all tenants unless --tenant is given)."""
    with _governor(db) as gov:
        budgets = gov.list_budgets(tenant)
    if as_json:
        print_json([b.to_spec() for b in budgets])
    else:
        make_console().print(budgets_table(budgets))


@budgets_app.command("set")
def budgets_set(
    budget_id: Annotated[str | None, typer.Option("--id", help="Budget id.")] = None,
    meter: Annotated[str | None, typer.Option(help="tokens, cost, requests, ...")] = None,
    window: Annotated[str | None, typer.Option(help="day, week, month, rolling:1h, ...")] = None,
    limit: Annotated[str | None, typer.Option(help="Human units: 200000, 5.00.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Owning tenant (omit: every tenant).")] = None,
    per: Annotated[str | None, typer.Option(help="Count each user/key/agent/... apart.")] = None,
    match: Pairs = None,
    exclude: Pairs = None,
    soft: Annotated[list[str] | None, typer.Option(help="Warn at this percent.")] = None,
    mode: Annotated[str | None, typer.Option(help="enforce, warn, shadow or off.")] = None,
    overrides: Annotated[
        bool, typer.Option("--overrides", help="Replace less specific budgets.")
    ] = False,
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Record usage, never refuse.")
    ] = False,
    name: Annotated[str | None, typer.Option()] = None,
    currency: Annotated[str | None, typer.Option(help="Currency of a cost budget.")] = None,
    file: Annotated[Path | None, typer.Option(help="YAML/TOML file of budgets.")] = None,
    db: Db = None,
) -> None:
    """Create or replace a budget from flags, or every budget in --file.

    Replacing is wholesale: fields not given take their defaults.
    """
    flags: dict[str, object] = {
        "id": budget_id, "meter": meter, "window": window, "limit": limit, "tenant": tenant,
        "per": per, "soft": soft, "mode": mode, "name": name, "currency": currency,
        "match": _pairs(match, "--match"), "exclude": _pairs(exclude, "--exclude"),
    }  # fmt: skip
    spec = {k: v for k, v in flags.items() if v is not None}
    if file is not None and (spec or overrides or disabled):
        raise typer.BadParameter("cannot be combined with budget flags", param_hint="--file")
    with _governor(db) as gov:
        if file is not None:
            saved = gov.load_budgets(file)
        else:
            saved = [gov.set_budget(spec | {"overrides": overrides, "enabled": not disabled})]
    make_console().print(budgets_table(saved), f"saved {len(saved)} budget(s)")


@budgets_app.command("delete")
def budgets_delete(
    budget_id: Annotated[str, typer.Argument(metavar="ID", help="Budget id.")], db: Db = None
) -> None:
    """Delete a budget and its counters; the ledger keeps every event."""
    with _governor(db) as gov:
        gov.delete_budget(budget_id)
    make_console().print(f"deleted budget {budget_id}", markup=False)


# --- reading ---------------------------------------------------------------------


@app.command()
def status(
    tenant: Tenant,
    user: User = None,
    group: Groups = None,
    key: Key = None,
    agent: Agent = None,
    feature: Feature = None,
    tag: Tags = None,
    provider: Provider = None,
    model: Model = None,
    as_json: AsJson = False,
    currency: Currency = "USD",
    db: Db = None,
) -> None:
    """Show every budget that applies to a subject, and where it stands now."""
    dims = {"user": user, "groups": group, "key": key, "agent": agent, "feature": feature}
    subject = _subject(tenant, tag, **dims)
    with _governor(db, currency) as gov:
        views = gov.status(subject, provider, model)
    if as_json:
        print_json([v.to_dict() for v in views])
    elif not views:
        make_console().print("no budget applies to this subject")
    else:
        make_console().print(status_table(views, currency))


@app.command()
def usage(
    tenant: Tenant,
    by: Annotated[list[str] | None, typer.Option(help="feature, model, user, day...")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 start (default: all time).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 end (default: now).")] = None,
    as_json: AsJson = False,
    currency: Currency = "USD",
    db: Db = None,
) -> None:
    """Show a tenant's usage totals grouped by dimensions (whole UTC hours)."""
    dims = by or []
    start, end = _instant(since, "--since"), _instant(until, "--until")
    with _governor(db, currency) as gov:
        rows = gov.usage(tenant, dims, start, end)
    if as_json:
        print_json([usage_json(r, currency) for r in rows])
    else:
        make_console().print(usage_table(rows, dims, currency))


# --- writing ---------------------------------------------------------------------


@app.command()
def record(
    tenant: Tenant,
    provider: Annotated[str, typer.Option(help="The provider called.")],
    model: Annotated[str, typer.Option(help="The model called.")],
    user: User = None,
    group: Groups = None,
    key: Key = None,
    agent: Agent = None,
    feature: Feature = None,
    tag: Tags = None,
    input_tokens: Annotated[int, typer.Option("--input", min=0)] = 0,
    output_tokens: Annotated[int, typer.Option("--output", min=0)] = 0,
    cost: Annotated[str | None, typer.Option(help="Cost in currency units, e.g. 0.0123.")] = None,
    request_id: Annotated[
        str | None, typer.Option(help="Idempotency key (default: a new uuid4).")
    ] = None,
    status: Annotated[str, typer.Option(help="success or error.")] = "success",
    as_json: AsJson = False,
    currency: Currency = "USD",
    db: Db = None,
) -> None:
    """Record a call that already happened (post-hoc metering) and print its event id."""
    dims = {"user": user, "groups": group, "key": key, "agent": agent, "feature": feature}
    subject = _subject(tenant, tag, **dims)
    spent: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cost is not None:
        spent["cost"] = cost
    rid = request_id or uuid.uuid4().hex
    with _governor(db, currency) as gov:
        result = gov.record(rid, subject, provider, model, spent, status=status)
    event = result.event
    if as_json:
        print_json(event.to_dict())
        return
    verb = "already recorded as" if result.replayed else "recorded"
    make_console().print(f"{verb} event {event.id} (request {rid})", markup=False)


@ledger_app.command("rebuild")
def ledger_rebuild(db: Db = None) -> None:
    """Recompute every counter from the ledger (after a restore or a budget change)."""
    with _governor(db) as gov:
        stats = gov.rebuild()
    make_console().print(f"read {stats.events} events, wrote {stats.counters} counters")


@db_app.command("upgrade")
def db_upgrade(db: Db = None) -> None:
    """Apply pending schema migrations (every command and the service also do on start)."""
    with _governor(db) as gov:
        version = getattr(gov.store, "schema_version", None)
        url = gov.store.url
        message = "nothing to migrate" if version is None else f"schema at version {version()}"
    make_console().print(f"{redact_url(url)}: {message}", markup=False)


@ledger_app.command("archive")
def ledger_archive(
    before: Annotated[str, typer.Option("--before", help="Events before this (ISO; whole hour).")],
    to: Annotated[Path, typer.Option("--to", help="New file to write (.jsonl.gz).")],
    db: Db = None,
) -> None:
    """Move old events into a gzip JSON-lines file; counters and usage reports keep them."""
    cutoff = _instant(before, "--before")
    assert cutoff is not None
    with _governor(db) as gov:
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
) -> None:
    """Recompute costs after a price correction; each event keeps its previous cost."""
    start, end = _instant(since, "--since"), _instant(until, "--until")
    assert start is not None and end is not None
    with _governor(db) as gov:
        stats = gov.reprice(start, end, model=model, tenant=tenant)
    make_console().print(
        f"repriced {stats.changed} of {stats.events} calls, cost changed by "
        f"{format_money(stats.delta_micros, 'USD')}",
        markup=False,
    )


@rates_app.command("set")
def rates_set(
    source: Annotated[str, typer.Option("--source", help="From this currency, e.g. USD.")],
    target: Annotated[str, typer.Option("--target", help="To this currency, e.g. EUR.")],
    rate: Annotated[str, typer.Option("--rate", help="Units of target per unit of source.")],
    since: Annotated[str | None, typer.Option("--from", help="Effective from (ISO).")] = None,
    db: Db = None,
) -> None:
    """Set an exchange rate (cost budgets in either currency are recounted)."""
    with _governor(db) as gov:
        saved = gov.set_rate(source, target, rate, _instant(since, "--from"))
    make_console().print(
        f"1 {saved.source} = {saved.rate} {saved.target} from {saved.effective_from.isoformat()}",
        markup=False,
    )


@rates_app.command("list")
def rates_list(as_json: AsJson = False, db: Db = None) -> None:
    """List the exchange rates."""
    with _governor(db) as gov:
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


@app.command()
def demo(
    db: Annotated[
        str | None, typer.Option(help="Store URL (default: sqlite:///allotment-demo.db).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated day.")] = 7,
) -> None:
    """Simulate a day of a CRM, a cost gateway and an agent orchestrator, then report.

    The database is deleted and recreated first, so every run prints the same.
    """
    # Imported here: the demo renders with this module's tables.
    from allotment.demo import DEMO_DB, run_demo

    run_demo(db or DEMO_DB, seed, make_console(), datetime.now(UTC).date())
