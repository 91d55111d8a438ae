"""The credit pools' and auto top-ups' SQL, written alike for SQLite and PostgreSQL.

``SqlCredits`` is ``SqlTx``'s base: the ``Crediting``, ``Credits``,
``ToppingUp`` and ``TopUps`` primitives of ``allotment.lifecycle.tx``, over
the connection primitives each dialect gives (``SqlPrimitives``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from allotment.core.credits import CreditEntry, Grant, counter_keys
from allotment.core.engine import Counter
from allotment.core.topups import TopUp
from allotment.lifecycle.tx import Key
from allotment.store._rows import (
    CREDIT_ENTRY_COLUMNS,
    GRANT_COLUMNS,
    TOPUP_COLUMNS,
    credit_entry_from_row,
    credit_entry_values,
    grant_from_row,
    grant_values,
    to_us,
    topup_from_row,
    topup_values,
)

__all__ = ["SqlCredits", "SqlPrimitives"]

_GRANT_SELECT = f"SELECT {', '.join(GRANT_COLUMNS)} FROM grants"
#: a new grant, unless its id or idempotency key is taken in its pool
_GRANT_INSERT = (
    f"INSERT INTO grants ({', '.join(GRANT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(GRANT_COLUMNS))}) ON CONFLICT DO NOTHING"
)
_CREDIT_SELECT = f"SELECT {', '.join(CREDIT_ENTRY_COLUMNS)} FROM credit_entries"
_CREDIT_INSERT = (
    f"INSERT INTO credit_entries ({', '.join(CREDIT_ENTRY_COLUMNS[1:])}) "
    f"VALUES ({', '.join('?' * (len(CREDIT_ENTRY_COLUMNS) - 1))})"
)
_TOPUP_SELECT = f"SELECT {', '.join(TOPUP_COLUMNS)} FROM topups"
_TOPUP_VALUES = f"({', '.join(TOPUP_COLUMNS)}) VALUES ({', '.join('?' * len(TOPUP_COLUMNS))})"
#: a new pending top-up, unless its member holds the pending slot (``topups_pending``)
_TOPUP_START = (
    f"INSERT INTO topups {_TOPUP_VALUES} "
    "ON CONFLICT (pool, member) WHERE state = 'pending' DO NOTHING"
)
_TOPUP_PUT = f"INSERT INTO topups {_TOPUP_VALUES} ON CONFLICT (id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in TOPUP_COLUMNS[1:]
)


class SqlPrimitives:
    """What a dialect's transaction gives the SQL written once: statements, counters read
    by key, and the lock clause of a SELECT for update."""

    #: appended to a SELECT of rows this transaction will change (PostgreSQL: " FOR UPDATE")
    _lock_rows = ""

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute ``sql``; the number of rows it changed."""
        raise NotImplementedError

    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def read_keys(self, keys: Sequence[Key]) -> list[Counter]:
        """Single-bucket counters (each backend reads, and locks, its own way)."""
        raise NotImplementedError


class SqlCredits(SqlPrimitives):
    """Credit pools' grants and credit ledger, and auto top-ups."""

    # credit pools
    def grants(self, pool: str, member: str) -> list[Grant]:
        rows = self._rows(
            f"{_GRANT_SELECT} WHERE pool = ? AND member = ? ORDER BY id{self._lock_rows}",
            (pool, member),
        )
        return [grant_from_row(row) for row in rows]

    def held_grants(self, pool: str, member: str) -> tuple[list[Grant], list[Counter], Counter]:
        # Two statements: the counters are read (and locked) once the grants are locked.
        grants = self.grants(pool, member)
        *held, debt = self.read_keys(counter_keys(pool, member, grants))
        return grants, held, debt

    def close_grant(self, pool: str, member: str, grant_id: str) -> None:
        self._run("UPDATE grants SET closed = ? WHERE pool = ? AND id = ?", (True, pool, grant_id))

    def void_grant(self, pool: str, member: str, grant_id: str, at: datetime) -> None:
        self._run(
            "UPDATE grants SET voided_at = ? WHERE pool = ? AND id = ?", (to_us(at), pool, grant_id)
        )

    def insert_grant(self, grant: Grant) -> Grant:
        # Inserted first: a concurrent insert of the same id or key is waited for, then found.
        if self._run(_GRANT_INSERT, grant_values(grant)):
            return grant
        rows: list[tuple[Any, ...]] = []
        if grant.idempotency_key is not None:  # the key names the grant before its id does
            rows = self._rows(
                f"{_GRANT_SELECT} WHERE pool = ? AND idempotency_key = ?",
                (grant.pool, grant.idempotency_key),
            )
        if not rows:
            rows = self._rows(f"{_GRANT_SELECT} WHERE pool = ? AND id = ?", (grant.pool, grant.id))
        return grant_from_row(rows[0])

    def pool_grants(self, pool: str, member: str | None) -> list[Grant]:
        if member is None:
            rows = self._rows(
                f"{_GRANT_SELECT} WHERE pool = ? ORDER BY member, created_at, id", (pool,)
            )
        else:
            rows = self._rows(
                f"{_GRANT_SELECT} WHERE pool = ? AND member = ? ORDER BY created_at, id",
                (pool, member),
            )
        return [grant_from_row(row) for row in rows]

    def append_credits(self, entries: Sequence[CreditEntry]) -> None:
        # One row at a time, in order: the database numbers them as they come.
        self._run_many(_CREDIT_INSERT, [credit_entry_values(e) for e in entries])

    def credit_entries(
        self, pool: str | None, member: str | None, after_id: int, limit: int
    ) -> list[CreditEntry]:
        where: list[str] = ["id > ?"]
        params: list[object] = [after_id]
        for clause, value in (("pool = ?", pool), ("member = ?", member)):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self._rows(
            f"{_CREDIT_SELECT} WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", (*params, limit)
        )
        return [credit_entry_from_row(row) for row in rows]

    # auto top-ups
    def latest_topup(self, pool: str, member: str) -> TopUp | None:
        rows = self._rows(
            f"{_TOPUP_SELECT} WHERE pool = ? AND member = ? "
            "ORDER BY state IN ('pending', 'failed') DESC, created_at DESC, id DESC LIMIT 1",
            (pool, member),
        )
        return topup_from_row(rows[0]) if rows else None

    def start_topup(self, topup: TopUp) -> bool:
        # PostgreSQL: an insert that meets another transaction's pending row in the
        # unique index waits for that transaction, then does nothing if it committed.
        return self._run(_TOPUP_START, topup_values(topup)) == 1

    def drop_topup(self, topup: TopUp) -> None:
        self._run("DELETE FROM topups WHERE id = ?", (topup.id,))

    def due_topups(self, now: datetime, limit: int) -> list[TopUp]:
        # SKIP LOCKED where rows are locked: concurrent workers never claim the same one.
        lock = f"{self._lock_rows} SKIP LOCKED" if self._lock_rows else ""
        at = to_us(now)
        rows = self._rows(
            f"{_TOPUP_SELECT} WHERE state = 'pending' "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
            "AND (claimed_until IS NULL OR claimed_until <= ?) "
            "ORDER BY created_at, id LIMIT ?" + lock,
            (at, at, limit),
        )
        return [topup_from_row(row) for row in rows]

    def topup(self, topup_id: str) -> TopUp | None:
        # Locked by a writer: of two workers finishing one top-up, the second sees it finished.
        rows = self._rows(f"{_TOPUP_SELECT} WHERE id = ?{self._lock_rows}", (topup_id,))
        return topup_from_row(rows[0]) if rows else None

    def put_topup(self, topup: TopUp) -> None:
        self._run(_TOPUP_PUT, topup_values(topup))
