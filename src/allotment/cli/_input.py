"""Turning option values into the Governor's arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

__all__ = ["instant", "pairs", "subject"]


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
