"""Routes: an authorization's ordered candidates, each a provider, a model and a backend.

``authorize(..., routes=[...])`` tries the candidates in order inside one
transaction and reserves on the first whose every applicable budget passes
(system 4: a hosted backend's sub-cap spent, the call falls back to the
operator's own hardware). A candidate's backend is written into the call's
subject as the tag ``backend`` (``BACKEND_TAG``), so a sub-cap is an ordinary
budget matching it (``match: {backend: hosted}``), the reservation and its
commit count on the route that was reserved, and the ledger keeps it. A call
served by another route than the first also keeps what was asked for, in the
tag ``requested_route`` (``REQUESTED_TAG``: ``provider/model@backend``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from allotment.core.subjects import Subject, check_identifier
from allotment.errors import ValidationError

__all__ = ["BACKEND_TAG", "MAX_ROUTES", "REQUESTED_TAG", "Route", "parse_routes"]

#: the subject tag naming the backend a call is served by
BACKEND_TAG = "backend"
#: the subject tag naming the route asked for first, when another one served the call
REQUESTED_TAG = "requested_route"
#: the most candidates one authorization may name
MAX_ROUTES = 8
_FIELDS = frozenset({"provider", "model", "backend"})


@dataclass(frozen=True, slots=True)
class Route:
    """One candidate: where a call may be served."""

    provider: str
    model: str
    backend: str | None = None

    @property
    def label(self) -> str:
        """``provider/model``, with ``@backend`` when it names one."""
        where = f"{self.provider}/{self.model}"
        return where if self.backend is None else f"{where}@{self.backend}"

    def subject(self, subject: Subject, requested: Route | None = None) -> Subject:
        """``subject`` as this route serves it: its backend tag set (or dropped), and the
        route ``requested`` first, when it is another."""
        return _served(subject, self.backend, None if requested == self else requested)

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "backend": self.backend}


@lru_cache(maxsize=4096)
def _served(subject: Subject, backend: str | None, requested: Route | None) -> Subject:
    """``Route.subject``, remembered: a new Subject validates every tag, and a routed
    authorize makes one per candidate (11 % of a three-route pair, bench.routes)."""
    tags = {k: v for k, v in subject.tags if k not in (BACKEND_TAG, REQUESTED_TAG)}
    if backend is not None:
        tags[BACKEND_TAG] = backend
    if requested is not None:
        tags[REQUESTED_TAG] = requested.label
    if tags == dict(subject.tags):
        return subject
    return replace(subject, tags=tuple(sorted(tags.items())))


def parse_routes(
    value: object, provider: str, model: str, field: str = "routes"
) -> tuple[Route, ...]:
    """The candidates of ``routes=[{provider, model, backend?}, ...]``, in order.

    The first is the route asked for: it must name the call's own ``provider``
    and ``model`` (given beside the routes, as every authorization gives them).
    """
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
        raise ValidationError(field, "must be a non-empty list of {provider, model, backend}")
    if len(value) > MAX_ROUTES:
        raise ValidationError(field, f"names more than {MAX_ROUTES} candidates")
    routes = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if isinstance(item, Route):
            routes.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ValidationError(where, "must be an object: {provider, model, backend}")
        for name in set(item) - _FIELDS:
            raise ValidationError(f"{where}.{name}", "is not a route field")
        route = Route(
            _required(item.get("provider"), f"{where}.provider"),
            _required(item.get("model"), f"{where}.model"),
            check_identifier(item.get("backend"), f"{where}.backend"),
        )
        routes.append(route)
    if (routes[0].provider, routes[0].model) != (provider, model):
        raise ValidationError(f"{field}[0]", "must be the call's own provider and model")
    if len(set(routes)) != len(routes):
        raise ValidationError(field, "names a candidate twice")
    return tuple(routes)


def _required(value: object, field: str) -> str:
    checked = check_identifier(value, field, required=True)
    assert checked is not None  # required
    return checked
