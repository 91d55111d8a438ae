"""``allotment status``, ``usage`` and ``record``: where budgets stand, where usage went;
``authorize``, ``heartbeat``, ``commit`` and ``release``: a call's lifecycle, for scripts.

``authorize`` exits with 0 when the call is allowed and 1 when it is refused
(its answer is printed either way); ``heartbeat`` with 0 while the lease is
alive and 1 once it has stopped. Errors exit as every command's do (2 for
bad input, 1 for an unreachable store or service, with an ``error:`` line on
stderr).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer
from rich.text import Text

from allotment._render import (
    decision_json,
    decision_lines,
    format_instant,
    make_console,
    print_json,
    status_json,
    status_table,
    usage_json,
    usage_table,
)
from allotment.cli._input import call_routes, instant, subject
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
    Owner,
    Provider,
    Tags,
    Tenant,
    Url,
    User,
)
from allotment.cli._target import HeartbeatLike, Target, backend, target
from allotment.errors import ValidationError
from allotment.lifecycle.leases import Heartbeat

__all__ = ["authorize", "commit", "heartbeat", "record", "release", "status", "usage"]

InputTokens = Annotated[int, typer.Option("--input", min=0, help="Input tokens.")]
OutputTokens = Annotated[int, typer.Option("--output", min=0, help="Output tokens.")]
Cost = Annotated[str | None, typer.Option(help="Cost in currency units, e.g. 0.0123.")]
Routes = Annotated[
    list[str] | None,
    typer.Option(
        "--route",
        help="A candidate: provider/model, or provider/model@backend; repeatable, tried in "
        "order. The first is the call's own --provider/--model, which may then be left out.",
    ),
]


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
    input_tokens: InputTokens = 0,
    output_tokens: OutputTokens = 0,
    cost: Cost = None,
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
    spent = _usage(input_tokens, output_tokens, cost)
    rid = request_id or uuid.uuid4().hex
    with backend(_priced_in(target(db, url, api_key), currency), currency=currency) as gov:
        result = gov.record(rid, who, provider, model, spent, status=status)
    event = result.event
    if as_json:
        print_json(event.to_dict())
        return
    verb = "already recorded as" if result.replayed else "recorded"
    make_console().print(f"{verb} event {event.id} (request {rid})", markup=False)


def authorize(
    tenant: Tenant,
    provider: Provider = None,
    model: Model = None,
    route: Routes = None,
    user: User = None,
    group: Groups = None,
    key: Key = None,
    agent: Agent = None,
    feature: Feature = None,
    install: Install = None,
    tag: Tags = None,
    input_tokens: InputTokens = 0,
    output_tokens: OutputTokens = 0,
    cost: Cost = None,
    request_id: Annotated[
        str | None, typer.Option(help="The call's id, for commit/release (default: a new uuid4).")
    ] = None,
    ttl: Annotated[
        int | None, typer.Option(min=1, help="Seconds the reservation (or lease) is held.")
    ] = None,
    max_duration: Annotated[
        int | None, typer.Option(min=1, help="Seconds heartbeats can keep a lease, at most.")
    ] = None,
    as_json: AsJson = False,
    currency: Currency = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Reserve an estimate before a call (on the first --route that fits), or be refused.

    Exits with 0 when allowed, 1 when refused. Commit or release the request id
    afterwards; a lease (a concurrency budget) is kept alive with heartbeat.
    """
    provider, model, routes = call_routes(route, provider, model)
    dims = {"user": user, "groups": group, "key": key, "agent": agent, "feature": feature,
            "install": install}  # fmt: skip
    who = subject(tenant, tag, **dims)
    estimate = _usage(input_tokens, output_tokens, cost)
    rid = request_id or uuid.uuid4().hex
    where = _priced_in(target(db, url, api_key), currency)
    try:
        with backend(where, currency=currency) as gov:
            decision = gov.authorize(
                rid, who, provider, model, estimate, ttl=ttl, max_duration=max_duration,
                routes=routes,
            )  # fmt: skip
    except ValidationError as exc:
        raise _named(exc) from None
    if as_json:
        print_json(decision_json(decision, currency or "USD"))
    else:
        console = make_console()
        for line in decision_lines(decision):
            console.print(line, soft_wrap=True)
        if decision.budgets:
            console.print(status_table(decision.budgets, currency or "USD"))
    if not decision.allowed:
        raise typer.Exit(1)


def heartbeat(
    lease_id: Annotated[str, typer.Argument(help="The lease: its authorization's request id.")],
    ttl: Annotated[
        int | None, typer.Option(min=1, help="Seconds from now (default: the lease's own).")
    ] = None,
    tenant: Owner = None,
    as_json: AsJson = False,
    currency: Currency = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Keep a lease alive; exits with 0 while it is, 1 once it has stopped (and why)."""
    with backend(target(db, url, api_key), currency=currency, priced=False) as gov:
        beat = gov.heartbeat(lease_id, ttl=ttl, tenant=tenant)
    if as_json:
        print_json(_beat_json(beat, currency or "USD"))
    else:
        console = make_console()
        console.print(_beat_line(beat), soft_wrap=True)
        if beat.budgets:
            console.print(status_table(beat.budgets, currency or "USD"))
    if not beat.alive:
        raise typer.Exit(1)


def _beat_json(beat: HeartbeatLike, currency: str) -> dict[str, Any]:
    """As the service answers it; ``currency`` is the ledger's (see ``status_json``)."""
    if isinstance(beat, Heartbeat):
        return beat.to_dict(currency=currency)
    return beat.to_dict()


def _beat_line(beat: HeartbeatLike) -> Text:
    """Alive until when (and at most until when), or stopped and why."""
    if not beat.alive:
        return Text.assemble(("stop", "bold red"), f" lease {beat.lease_id}: {beat.reason}")
    line = Text.assemble(("alive", "green"), f" lease {beat.lease_id}")
    line.append(f", held until {format_instant(beat.expires_at)}")
    if beat.max_until is not None:
        line.append(f" (at most until {format_instant(beat.max_until)})")
    return line


def commit(
    request_id: Annotated[str, typer.Argument(help="The authorization's request id.")],
    input_tokens: InputTokens = 0,
    output_tokens: OutputTokens = 0,
    cost: Cost = None,
    status: Annotated[str, typer.Option(help="success or error.")] = "success",
    reason: Annotated[str | None, typer.Option(help="Why the call failed.")] = None,
    tenant: Owner = None,
    as_json: AsJson = False,
    currency: Currency = None,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Replace an authorization's reservation with what the call used; print its event id."""
    used = _usage(input_tokens, output_tokens, cost)
    with backend(_priced_in(target(db, url, api_key), currency), currency=currency) as gov:
        result = gov.commit(request_id, used, status=status, reason=reason, tenant=tenant)
    event = result.event
    if as_json:
        print_json(event.to_dict())
        return
    verb = "already committed as" if result.replayed else "committed"
    console = make_console()
    console.print(f"{verb} event {event.id} (request {request_id})", markup=False)
    if result.overshoot:
        over = ", ".join(a.budget_id for a in result.overshoot)
        console.print(f"used more than the estimate on {over}", markup=False)


def release(
    request_id: Annotated[str, typer.Argument(help="The authorization's request id.")],
    reason: Annotated[str, typer.Option(help="Why it was not used.")] = "released",
    tenant: Owner = None,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Give an authorization's reservation back unused (a no-op once committed or released)."""
    with backend(target(db, url, api_key), priced=False) as gov:
        state = gov.release(request_id, reason, tenant=tenant)
    if as_json:
        print_json({"request_id": request_id, "state": state.value})
    else:
        make_console().print(f"request {request_id}: {state.value}", markup=False)


def _usage(input_tokens: int, output_tokens: int, cost: str | None) -> dict[str, Any]:
    spent: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return spent if cost is None else spent | {"cost": cost}


def _priced_in(where: Target, currency: str | None) -> Target:
    """``where``, after refusing ``--currency`` with ``--url`` (the service prices in its own)."""
    if where.url is not None and currency is not None:
        raise typer.BadParameter("not with --url: the service has its own", param_hint="--currency")
    return where


def _named(exc: ValidationError) -> Exception:
    """A route candidate the Governor (or the service) refuses, named as ``--route``."""
    if not exc.field.startswith("routes"):
        return exc
    return typer.BadParameter(f"{exc.field} {exc.message}", param_hint="--route")
