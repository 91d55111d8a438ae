"""``allotment status``, ``usage`` and ``record``: where budgets stand, where usage went."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from allotment._render import (
    make_console,
    print_json,
    status_json,
    status_table,
    usage_json,
    usage_table,
)
from allotment.cli._input import instant, subject
from allotment.cli._options import (
    Agent,
    ApiKey,
    AsJson,
    Currency,
    Db,
    Feature,
    Groups,
    Install,
    Key,
    Model,
    Provider,
    Tags,
    Tenant,
    Url,
    User,
)
from allotment.cli._target import backend, target

__all__ = ["record", "status", "usage"]


def status(
    tenant: Tenant,
    user: User = None,
    group: Groups = None,
    key: Key = None,
    agent: Agent = None,
    feature: Feature = None,
    install: Install = None,
    tag: Tags = None,
    provider: Provider = None,
    model: Model = None,
    as_json: AsJson = False,
    currency: Currency = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Show every budget that applies to a subject, and where it stands now."""
    dims = {"user": user, "groups": group, "key": key, "agent": agent, "feature": feature,
            "install": install}  # fmt: skip
    who = subject(tenant, tag, **dims)
    with backend(target(db, url, api_key), currency=currency) as gov:
        views = gov.status(who, provider, model)
    if as_json:
        print_json(status_json(views, currency or "USD"))
    elif not views:
        make_console().print("no budget applies to this subject")
    else:
        make_console().print(status_table(views, currency or "USD"))


def usage(
    tenant: Tenant,
    by: Annotated[list[str] | None, typer.Option(help="feature, model, user, day...")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 start (default: all time).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 end (default: now).")] = None,
    order: Annotated[
        str | None, typer.Option(help="Biggest first by cost, tokens, calls, errors...")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N rows.")] = None,
    as_json: AsJson = False,
    currency: Currency = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Show a tenant's usage totals grouped by dimensions (whole UTC hours)."""
    dims = by or []
    start, end = instant(since, "--since"), instant(until, "--until")
    with backend(target(db, url, api_key), currency=currency) as gov:
        rows = gov.usage(tenant, dims, start, end, order=order, limit=limit)
    money = currency or "USD"
    if as_json:
        print_json([usage_json(r, money) for r in rows])
    else:
        make_console().print(usage_table(rows, dims, money))


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
    currency: Currency = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Record a call that already happened (post-hoc metering) and print its event id."""
    dims = {"user": user, "groups": group, "key": key, "agent": agent, "feature": feature}
    who = subject(tenant, tag, **dims)
    spent: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cost is not None:
        spent["cost"] = cost
    rid = request_id or uuid.uuid4().hex
    where = target(db, url, api_key)
    if where.url is not None and currency is not None:
        raise typer.BadParameter("not with --url: the service has its own", param_hint="--currency")
    with backend(where, currency=currency) as gov:
        result = gov.record(rid, who, provider, model, spent, status=status)
    event = result.event
    if as_json:
        print_json(event.to_dict())
        return
    verb = "already recorded as" if result.replayed else "recorded"
    make_console().print(f"{verb} event {event.id} (request {rid})", markup=False)
