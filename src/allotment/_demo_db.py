"""Which databases the demo may fill, keep or delete: never one holding anything else.

The demo runs in the CLI's own database, so it must tell an earlier demo
(keep it, or delete it on ``--reset``) from a database of real data (touch
nothing). It reads the SQLite file directly, read-only, before any store
opens it (opening would create and migrate it).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from allotment.errors import ConfigurationError

__all__ = ["DemoState", "demo_file", "demo_state", "not_a_demo", "reset_database"]


def demo_file(url: str) -> Path | None:
    """The SQLite file behind ``url`` (None for in-memory stores)."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return None
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"the demo runs on sqlite:///FILE or memory://, not {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return None if path in ("", ":memory:") else Path(path)


DemoState = Literal["fresh", "demo", "foreign"]


def _contents(path: Path) -> tuple[set[str], bool] | None:
    """The budget ids in ``path`` and whether it has events; None if it is not a store."""
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                return set(), False
            ids = {row[0] for row in conn.execute("SELECT id FROM budgets")}
            return ids, conn.execute("SELECT EXISTS (SELECT 1 FROM events)").fetchone()[0] == 1
    except sqlite3.Error:
        return None


def demo_state(url: str, demo_ids: frozenset[str]) -> DemoState:
    """``fresh`` (nothing to keep), ``demo`` (an earlier demo) or ``foreign`` (other data).

    A database with the demo's budgets is a demo, even with budgets of yours
    added; one with keys only (a service started on it) is fresh.
    """
    path = demo_file(url)
    if path is None or not path.exists() or path.stat().st_size == 0:
        return "fresh"
    found = _contents(path)
    if found is None:
        return "foreign"
    ids, has_events = found
    if ids & demo_ids:
        return "demo"
    return "foreign" if ids or has_events else "fresh"


def not_a_demo(path: Path | None, why: str) -> ConfigurationError:
    """The error for a database the demo will not touch."""
    return ConfigurationError(
        f"{path} is not a demo database ({why}); refusing to touch it: "
        "give the demo another file with --db sqlite:///allotment-demo.db"
    )


def reset_database(url: str, demo_ids: frozenset[str]) -> None:
    """Delete the demo database file and its WAL companions, if they exist.

    The demo deletes its database to start afresh; a mistyped ``--db`` must
    not cost an operator their real ledger, nor budgets added to the demo.
    """
    path = demo_file(url)
    if path is None or not path.exists():
        return
    found = _contents(path)
    extra = None if found is None else sorted(found[0] - demo_ids)
    if demo_state(url, demo_ids) == "foreign" or extra is None:
        raise not_a_demo(path, "it holds data of its own")
    if extra:
        raise not_a_demo(path, f"it holds budgets the demo did not make: {', '.join(extra)}")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
