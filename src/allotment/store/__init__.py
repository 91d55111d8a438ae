"""Stores: where budgets, counters, reservations and the ledger live.

Chosen by URL: ``memory://``, ``sqlite:///path.db`` or
``postgresql://host/db`` (the last needs the ``postgres`` extra, imported
only when asked for).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from allotment.errors import ConfigurationError
from allotment.store.base import Store
from allotment.store.memory import MemoryStore
from allotment.store.sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore", "Store", "open_store"]


def _postgres(url: str) -> Store:
    from allotment.store.postgres import PostgresStore

    return PostgresStore(url)


_SCHEMES: dict[str, Callable[[str], Store]] = {
    "memory": MemoryStore,
    "sqlite": SQLiteStore,
    "postgresql": _postgres,
    "postgres": _postgres,
}


def open_store(url: str) -> Store:
    """Open the store a URL names, or raise ConfigurationError for an unknown scheme."""
    scheme = urlsplit(url).scheme
    factory = _SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ConfigurationError(f"unknown store URL scheme {scheme!r} in {url!r} (known: {known})")
    return factory(url)
