"""Where a command works: on the store itself, or through a running service.

Every command that reads or changes budgets, usage, keys or the ledger takes
``--db URL`` (local) or ``--url URL --api-key KEY`` (remote, through
``allotment.client.Client``), defaulting to ``$ALLOTMENT_URL`` /
``$ALLOTMENT_API_KEY``, else ``$ALLOTMENT_DB``, else ``sqlite:///allotment.db``.
A flag beats the environment.

The commands are written once, against ``Backend``: the part of the
Governor's API they use, which ``Governor`` and ``Client`` both satisfy (the
type checker holds them to it in ``backend``). Commands with no HTTP endpoint
(ledger maintenance, schema upgrades) open a Governor through
``local``, which refuses remote mode in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import typer

from allotment._render import DecisionLike, SpecLike, StatusRow, UsageLine
from allotment.client import Client
from allotment.config import db_url, redact_url, service_key, service_url
from allotment.core.fx import FxRate
from allotment.core.ledger import Adjustment, ReservationState
from allotment.errors import StoreError
from allotment.governor import Governor
from allotment.settings import Settings, build_governor
from allotment.store.base import EventQuery

__all__ = ["Backend", "HeartbeatLike", "Target", "backend", "local", "target"]


@dataclass(frozen=True, slots=True)
class Target:
    """A store URL (local), or a service URL and its key (remote)."""

    db: str | None = None
    url: str | None = None
    api_key: str | None = None


def target(db: str | None, url: str | None, api_key: str | None) -> Target:
    """Where the flags (else the environment) say to work."""
    if db and url:
        raise typer.BadParameter("give --db or --url, not both", param_hint="--db")
    if db:
        return Target(db=db)
    url = url or service_url()
    if url is None:
        if api_key:
            raise typer.BadParameter("only with --url (or $ALLOTMENT_URL)", param_hint="--api-key")
        return Target(db=db_url())
    key = api_key or service_key()
    if not key:
        raise typer.BadParameter(
            f"needed to talk to {url}: pass --api-key or set ALLOTMENT_API_KEY",
            param_hint="--api-key",
        )
    return Target(url=url, api_key=key)


# --- what the commands need -----------------------------------------------------------------


class EventLike(Protocol):
    """A ledger event, local or remote."""

    @property
    def id(self) -> int | None: ...
    def to_dict(self) -> dict[str, Any]: ...


class Recorded(Protocol):
    """What ``record`` answers, local or remote."""

    @property
    def event(self) -> EventLike: ...
    @property
    def replayed(self) -> bool: ...
    @property
    def overshoot(self) -> Sequence[Adjustment]: ...


class HeartbeatLike(Protocol):
    """A lease after a heartbeat: ``Heartbeat``, or the client's ``RemoteHeartbeat``."""

    @property
    def lease_id(self) -> str: ...
    @property
    def alive(self) -> bool: ...
    @property
    def stop(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def expires_at(self) -> datetime | str | None: ...
    @property
    def max_until(self) -> datetime | str | None: ...
    @property
    def budgets(self) -> Sequence[StatusRow]: ...
    def to_dict(self) -> dict[str, Any]: ...


class KeyLike(Protocol):
    """An API key (never its secret), local or remote."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def tenant(self) -> str | None: ...
    def to_dict(self) -> Mapping[str, Any]: ...


class Backend(Protocol):
    """The Governor's methods the commands use; ``Governor`` and ``Client`` both have them."""

    def status(
        self, subject: Mapping[str, Any], provider: str | None = ..., model: str | None = ...
    ) -> Sequence[StatusRow]: ...

    def usage(
        self,
        tenant: str,
        by: Sequence[str] = ...,
        since: datetime | None = ...,
        until: datetime | None = ...,
        *,
        order: str | None = ...,
        limit: int | None = ...,
    ) -> Sequence[UsageLine]: ...

    def record(
        self,
        request_id: str,
        subject: Mapping[str, Any],
        provider: str,
        model: str,
        usage: Mapping[str, Any],
        *,
        status: str = ...,
        occurred_at: datetime | None = ...,
        reason: str | None = ...,
    ) -> Recorded: ...

    def authorize(
        self,
        request_id: str,
        subject: Mapping[str, Any],
        provider: str,
        model: str,
        estimate: Mapping[str, Any] | None = ...,
        *,
        ttl: int | None = ...,
        max_duration: int | None = ...,
        routes: Sequence[Mapping[str, Any]] | None = ...,
    ) -> DecisionLike: ...

    def commit(
        self,
        request_id: str,
        usage: Mapping[str, Any],
        *,
        status: str = ...,
        reason: str | None = ...,
        tenant: str | None = ...,
    ) -> Recorded: ...

    def release(
        self, request_id: str, reason: str = ..., *, tenant: str | None = ...
    ) -> ReservationState: ...

    def heartbeat(
        self, lease_id: str, *, ttl: int | None = ..., tenant: str | None = ...
    ) -> HeartbeatLike: ...

    def events(self, query: EventQuery | None = ...) -> Sequence[EventLike]: ...
    def list_budgets(self, tenant: str | None = ...) -> Sequence[SpecLike]: ...
    def get_budget(self, budget_id: str, *, tenant: str | None = ...) -> SpecLike: ...
    def set_budget(self, budget: Mapping[str, Any]) -> SpecLike: ...
    def load_budgets(self, path: Path) -> Sequence[SpecLike]: ...
    def delete_budget(self, budget_id: str, *, tenant: str | None = ...) -> None: ...
    def set_rate(
        self, source: str, target: str, rate: Decimal | str, effective_from: datetime | None = ...
    ) -> FxRate: ...
    def rates(self) -> Sequence[FxRate]: ...

    def create_key(
        self, role: str, tenant: str | None = ..., name: str | None = ...
    ) -> tuple[KeyLike, str]: ...

    def list_keys(self, tenant: str | None = ...) -> Sequence[KeyLike]: ...
    def revoke_key(self, key_id: str) -> object: ...


@contextmanager
def backend(
    where: Target, *, currency: str | None = None, priced: bool = True
) -> Iterator[Backend]:
    """The Governor on the store, or the client of the service, closed afterwards.

    ``currency`` is the Governor's (the service has its own); ``priced=False``
    skips loading the price catalog, for commands that price nothing.
    """
    if where.url is not None:
        assert where.api_key is not None
        with Client(where.url, where.api_key) as client:
            yield client
        return
    assert where.db is not None
    options: dict[str, Any] = {} if priced else {"pricer": None}
    with _governor(where.db, currency=currency or "USD", **options) as gov:
        yield gov


@contextmanager
def local(where: Target, command: str) -> Iterator[Governor]:
    """A Governor on the store; ``command`` names what refuses remote mode, in one line."""
    if where.db is None:
        raise typer.BadParameter(
            f"`allotment {command}` works on the database itself (it has no HTTP "
            "endpoint): run it with --db URL where the store is reachable",
            param_hint="--db",
        )
    with _governor(where.db) as gov:
        yield gov


@contextmanager
def _governor(url: str, **options: Any) -> Iterator[Governor]:
    # psycopg_pool logs each failed connection attempt as a warning: the one
    # error line says it all (the service, which opens no store here, keeps them).
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    settings = Settings.from_env(db=_reachable(url))
    with build_governor(settings, **options) as gov:
        yield gov


def _reachable(url: str) -> str:
    """``url``, after checking at once that a PostgreSQL server answers.

    Opening the store waits up to 10 seconds for its connection pool; a
    command should say in a moment that the server is down. A URL without
    ``connect_timeout`` gets 2 seconds (libpq's shortest).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        return url
    given = url
    if not any(name == "connect_timeout" for name, _ in parse_qsl(parts.query)):
        query = "&".join(filter(None, (parts.query, "connect_timeout=2")))
        url = parts._replace(query=query).geturl()
    try:
        import psycopg

        from allotment.store.postgres import _parse_url
    except ImportError:
        return url  # opening the store says what is missing
    conninfo = _parse_url(url)[0]
    try:
        psycopg.connect(conninfo).close()
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostgreSQL at {redact_url(given)}: {exc}") from exc
    return url
