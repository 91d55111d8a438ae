"""Who a call is attributed to.

``tenant`` is required and is the unit of isolation. The other dimensions are
optional; a budget can select on any of them, and ``per`` budgets count each
distinct value of one of them separately.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from allotment.errors import ValidationError

__all__ = [
    "SCALAR_DIMENSIONS",
    "Subject",
    "check_identifier",
    "check_text",
    "is_secret_name",
    "parse_subject",
]

#: Subject dimensions holding one identifier each.
SCALAR_DIMENSIONS = ("tenant", "user", "key", "agent", "session", "feature", "device", "install")
_MAX_ID = 256
_optional_values = attrgetter(*SCALAR_DIMENSIONS[1:])
_all_values = attrgetter(*SCALAR_DIMENSIONS, "groups", "tags")


def check_identifier(value: object, field: str, *, required: bool = False) -> str | None:
    """Return ``value`` if it is a usable identifier (or None when optional).

    Identifiers are non-blank, printable strings of at most 256 characters:
    no control or invisible formatting characters can hide in a ledger.
    """
    if value is None and not required:
        return None
    if type(value) is str and 0 < len(value) <= _MAX_ID and value.isprintable():
        if not value.isspace():
            return value
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    if len(value) > _MAX_ID:
        raise ValidationError(field, f"is longer than {_MAX_ID} characters")
    raise ValidationError(field, "must not contain control or formatting characters")


_SECRET_NAME = re.compile("key|token|secret|password", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a tag named ``name`` may hold a credential, so is never stored (system 3).

    Any name containing ``key``, ``token``, ``secret`` or ``password``, in any
    case: such tags are dropped from a subject before anything sees them.
    """
    return _SECRET_NAME.search(name) is not None


#: free text (a commit's reason, a key's name) is at most this long
MAX_TEXT = 1024


def check_text(value: object, field: str, *, limit: int = MAX_TEXT) -> str | None:
    """Return optional free text if it is printable and at most ``limit`` characters.

    Free text may be blank, unlike an identifier, but holds no control
    characters either: every store keeps exactly what another store keeps
    (PostgreSQL refuses a NUL byte that SQLite would store).
    """
    if value is None or (type(value) is str and len(value) <= limit and value.isprintable()):
        return value
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise ValidationError(field, f"is longer than {limit} characters")
    raise ValidationError(field, "must not contain control or formatting characters")


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
        check_identifier(self.tenant, "subject.tenant", required=True)
        for name, value in zip(SCALAR_DIMENSIONS[1:], _optional_values(self), strict=True):
            if value is not None:
                check_identifier(value, f"subject.{name}")
        groups: Any = self.groups
        if not isinstance(groups, tuple):
            object.__setattr__(self, "groups", tuple(groups))
        for i, group in enumerate(self.groups):
            check_identifier(group, f"subject.groups[{i}]", required=True)
        tags: Any = self.tags
        if isinstance(tags, Mapping):
            tags = tuple(sorted(tags.items()))
        for name, value in tags:
            check_identifier(name, "subject.tags", required=True)
            check_identifier(value, f"subject.tags.{name}", required=True)
        if any(map(is_secret_name, dict(tags))):
            tags = tuple(item for item in tags if not is_secret_name(item[0]))
        object.__setattr__(self, "tags", tags)

    def tag(self, name: str) -> str | None:
        """The value of tag ``name``, if set."""
        for key, value in self.tags:
            if key == name:
                return value
        return None

    def as_tuple(self) -> tuple[object, ...]:
        """Every field as a tuple of plain values (for fingerprints and keys)."""
        return _all_values(self)

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


_CACHE: dict[tuple[tuple[str, Any], ...], Subject] = {}
_CACHE_SIZE = 4096


def parse_subject(data: Mapping[str, Any] | Subject, field: str = "subject") -> Subject:
    """Build a ``Subject`` from untrusted input, naming the bad field on error.

    The same few subjects arrive over and over, so validated subjects given
    as flat dicts of strings are remembered (a bounded cache, cleared when
    full); a dict holding lists or dicts is validated afresh.
    """
    if isinstance(data, Subject):
        return data
    if type(data) is dict and field == "subject":
        key = tuple(data.items())
        try:
            cached = _CACHE.get(key)
        except TypeError:  # unhashable values: groups or tags given
            return _parse_subject(data, field)
        if cached is None:
            cached = _parse_subject(data, field)
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.clear()
            _CACHE[key] = cached
        return cached
    return _parse_subject(data, field)


def _parse_subject(data: Mapping[str, Any] | Subject, field: str) -> Subject:
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
    values: dict[str, Any] = {k: data.get(k) for k in SCALAR_DIMENSIONS}
    try:
        return Subject(**values, groups=tuple(groups), tags=tuple(sorted(tags.items())))
    except ValidationError as exc:
        if field == "subject":
            raise
        raise ValidationError(field + exc.field.removeprefix("subject"), exc.message) from None
