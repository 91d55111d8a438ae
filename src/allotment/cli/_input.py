"""Turning option values into the Governor's arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

__all__ = ["call_routes", "instant", "pairs", "route", "subject"]


def pairs(values: list[str] | None, option: str) -> dict[str, list[str]] | None:
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


def subject(tenant: str, tags: list[str] | None, **dims: Any) -> dict[str, Any]:
    """A subject from ``--tenant``, the dimension options given and ``--tag name=value``."""
    found = {"tenant": tenant, **{k: v for k, v in dims.items() if v}}
    tag_values = pairs(tags, "--tag") or {}
    if tag_values:
        found["tags"] = {name: values[-1] for name, values in tag_values.items()}
    return found


def instant(value: str | None, option: str) -> datetime | None:
    """ISO 8601 text as an aware datetime; a date or a naive time is taken as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        message = f"not an ISO 8601 date or time: {value!r}"
        raise typer.BadParameter(message, param_hint=option) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def route(value: str) -> dict[str, str]:
    """``provider/model`` or ``provider/model@backend`` as a route candidate.

    The backend is what follows the last ``@``: a model whose own name has one
    (``vertex/claude-sonnet@2024``) is written with a trailing ``@`` when it
    names no backend (``vertex/claude-sonnet@2024@``).
    """
    head, _, backend = value.rpartition("@") if "@" in value else (value, "", "")
    provider, slash, model = head.partition("/")
    if not slash or not provider.strip() or not model.strip():
        message = f"expected provider/model or provider/model@backend, got {value!r}"
        raise typer.BadParameter(message, param_hint="--route")
    found = {"provider": provider, "model": model}
    return found | {"backend": backend} if backend else found


def call_routes(
    values: list[str] | None, provider: str | None, model: str | None
) -> tuple[str, str, list[dict[str, str]] | None]:
    """The call's provider and model, and its candidates from ``--route`` (None: none).

    With ``--route``, ``--provider`` and ``--model`` may be left out: they are
    the first route's (and, when given, must be).
    """
    if not values:
        for name, value in (("--provider", provider), ("--model", model)):
            if value is None:
                raise typer.BadParameter("is required (or give --route)", param_hint=name)
        assert provider is not None and model is not None
        return provider, model, None
    routes = [route(v) for v in values]
    first = routes[0]
    if provider not in (None, first["provider"]) or model not in (None, first["model"]):
        asked = f"{provider or first['provider']}/{model or first['model']}"
        message = (
            f"the first one must be the call's --provider/--model ({asked}), got {values[0]!r}"
        )
        raise typer.BadParameter(message, param_hint="--route")
    return first["provider"], first["model"], routes
