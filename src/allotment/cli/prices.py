"""``allotment prices``: what a model costs, what a request would cost, what was guessed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from allotment._render import format_money, make_console, print_json
from allotment.cli._group import Group
from allotment.cli._options import ApiKey, AsJson, Db, Url
from allotment.cli._target import backend, target
from allotment.core.usage import Usage
from allotment.errors import ValidationError
from allotment.pricing import CATALOG_VERSION
from allotment.settings import Settings, build_pricer
from allotment.store.base import EventQuery

__all__ = ["prices_app"]

prices_app = typer.Typer(
    cls=Group, help="Look up prices, estimate requests, list guessed prices.", no_args_is_help=True
)

ProviderOpt = Annotated[
    str | None, typer.Option("--provider", help="Provider, if not given as provider/model.")
]


def split_model(model: str, provider: str | None) -> tuple[str, str]:
    """``openai/gpt-4o-mini`` -> (``openai``, ``gpt-4o-mini``); ``--provider`` wins."""
    if provider:
        return provider, model
    if "/" in model:
        head, rest = model.split("/", 1)
        return head, rest
    raise ValidationError("model", "give provider/model or --provider")


@prices_app.command("show")
def show(
    model: Annotated[str, typer.Argument(help="provider/model, e.g. openai/gpt-4o-mini")],
    provider: ProviderOpt = None,
    at: Annotated[str | None, typer.Option(help="ISO time (default: now).")] = None,
    as_json: AsJson = False,
) -> None:
    """Show the price of a model per million tokens, and where it comes from (the
    deployment's price overrides in $ALLOTMENT_CONFIG included)."""
    provider_id, model_id = split_model(model, provider)
    when = _instant(at)
    price = build_pricer(Settings.from_env()).price(provider_id, model_id, Usage(requests=0), when)
    record = price.to_dict() | {"provider": provider_id, "model": model_id, "at": when}
    if as_json:
        print_json(record)
        return
    table = Table("unit", "USD", title=f"{provider_id}/{model_id} at {when:%Y-%m-%d %H:%M %Z}")
    for unit, value in sorted(
        price.detail.get("unit_prices", price.detail.get("rate", {})).items()
    ):
        table.add_row(unit, str(value))
    console = make_console()
    console.print(table)
    resolved = f"{price.detail.get('provider_id', '?')}/{price.detail.get('model_id', '?')}"
    console.print(f"source: {price.source}  resolved: {resolved}  {CATALOG_VERSION}")
    if not price.known_model:
        console.print("unknown model: priced conservatively as the model above", style="yellow")


@prices_app.command("estimate")
def estimate(
    model: Annotated[str, typer.Option("--model", help="provider/model")],
    file: Annotated[Path, typer.Option("--file", help="JSON request body.")],
    provider: ProviderOpt = None,
    as_json: AsJson = False,
) -> None:
    """Estimate a request's tokens and cost before sending it."""
    provider_id, model_id = split_model(model, provider)
    try:
        request = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationError("file", f"cannot read a JSON request: {exc}") from None
    if not isinstance(request, dict):
        raise ValidationError("file", "the request must be a JSON object")
    usage, price = build_pricer(Settings.from_env()).estimate(
        request, provider=provider_id, model=model_id, at=datetime.now(UTC)
    )
    record = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_micros": price.amount_micros,
        "currency": price.currency,
        "source": price.source,
    }
    if as_json:
        print_json(record)
        return
    make_console().print(
        f"{provider_id}/{model_id}: {usage.input_tokens:,} input + {usage.output_tokens:,} "
        f"output tokens, at most {format_money(price.amount_micros, price.currency)} "
        f"({price.source})"
    )


@prices_app.command("unknown")
def unknown(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 100,
    as_json: AsJson = False,
    db: Db = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """List calls priced by a fallback: unknown models and usage no price covers."""
    query = EventQuery(tenant=tenant, price_source="fallback", limit=limit)
    with backend(target(db, url, api_key), priced=False) as gov:
        events = gov.events(query)
    rows = [_flagged(e.to_dict()) for e in events]
    if as_json:
        print_json(rows)
        return
    table = Table("event", "time", "tenant", "provider", "model", "why", "cost")
    for row in rows:
        table.add_row(
            str(row["id"]), row["time"], row["tenant"], row["provider"], row["model"],
            row["why"], format_money(row["cost_micros"], row["currency"]),
        )  # fmt: skip
    make_console().print(table)
    make_console().print(f"{len(rows)} call(s) priced by a fallback")


def _flagged(event: dict[str, Any]) -> dict[str, Any]:
    price = event["price"]
    why = (
        "unknown model"
        if price.get("unknown_model")
        else "uncovered: " + ", ".join(price.get("uncovered", []))
    )
    return {
        "id": event["id"],
        "time": event["occurred_at"],
        "tenant": event["subject"]["tenant"],
        "provider": event["provider"],
        "model": event["model"],
        "why": why,
        "cost_micros": event["usage"]["cost_micros"] or 0,
        "currency": event["currency"],
    }


def _instant(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError("at", f"not an ISO date or time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
