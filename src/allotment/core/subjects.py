"""Who a call is attributed to.

``tenant`` is required and is the unit of isolation. The other dimensions are
optional; a budget can select on any of them, and ``per`` budgets count each
distinct value of one of them separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from allotment.errors import ValidationError

__all__ = ["SCALAR_DIMENSIONS", "Subject", "parse_subject"]

#: Subject dimensions holding one identifier each.
SCALAR_DIMENSIONS = ("tenant", "user", "key", "agent", "session", "feature", "device", "install")
_MAX_ID = 256


def _check_id(value: object, field: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    if len(value) > _MAX_ID:
        raise ValidationError(field, f"is longer than {_MAX_ID} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationError(field, "must not contain control characters")
    return value


@dataclass(frozen=True, slots=True)
class Subject:
    """The attribution of a call.

    ``groups`` is a tuple (a user may be in several); ``tags`` is a sorted
    tuple of ``(name, value)`` pairs so subjects stay hashable.
    """

    tenant: str
    user: str | None = None
    groups: tuple[str, ...] = ()
    key: str | None = None
    agent: str | None = None
    session: str | None = None
    feature: str | None = None
    device: str | None = None
    install: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _check_id(self.tenant, "subject.tenant", required=True)
        for name in SCALAR_DIMENSIONS[1:]:
            _check_id(getattr(self, name), f"subject.{name}")
        if not isinstance(self.groups, tuple):
            object.__setattr__(self, "groups", tuple(self.groups))
        for i, group in enumerate(self.groups):
            _check_id(group, f"subject.groups[{i}]", required=True)
        if isinstance(self.tags, Mapping):
            object.__setattr__(self, "tags", tuple(sorted(self.tags.items())))
        for name, value in self.tags:
            _check_id(name, "subject.tags", required=True)
            _check_id(value, f"subject.tags.{name}", required=True)

    def tag(self, name: str) -> str | None:
        """The value of tag ``name``, if set."""
        for key, value in self.tags:
            if key == name:
                return value
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form with empty dimensions left out."""
        out: dict[str, Any] = {}
        for name in SCALAR_DIMENSIONS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.groups:
            out["groups"] = list(self.groups)
        if self.tags:
            out["tags"] = dict(self.tags)
        return out


def parse_subject(data: Mapping[str, Any] | Subject, field: str = "subject") -> Subject:
    """Build a ``Subject`` from untrusted input, naming the bad field on error."""
    if isinstance(data, Subject):
        return data
    if not isinstance(data, Mapping):
        raise ValidationError(field, f"must be an object, got {type(data).__name__}")
    known = {*SCALAR_DIMENSIONS, "groups", "tags"}
    for key in data:
        if key not in known:
            raise ValidationError(f"{field}.{key}", "is not a subject dimension")
    if "tenant" not in data:
        raise ValidationError(f"{field}.tenant", "is required")
    groups = data.get("groups") or ()
    if isinstance(groups, str) or not isinstance(groups, list | tuple):
        raise ValidationError(f"{field}.groups", "must be a list of strings")
    tags = data.get("tags") or {}
    if not isinstance(tags, Mapping):
        raise ValidationError(f"{field}.tags", "must be an object of strings")
    try:
        return Subject(
            **{k: data.get(k) for k in SCALAR_DIMENSIONS},
            groups=tuple(groups),
            tags=tuple(sorted(tags.items())),
        )
    except ValidationError as exc:
        if field == "subject":
            raise
        raise ValidationError(field + exc.field.removeprefix("subject"), exc.message) from None
