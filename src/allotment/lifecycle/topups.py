"""Auto top-up steps: started by a commit, paid by a worker, finished by the outcome.

``maybe_start`` runs inside the commit that left a pool member's balance low
(see ``allotment.core.topups`` for the rules); ``claim`` and ``finish`` run
in their own transactions around the gateway call, which never runs inside
one. Every step is a credit entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from allotment.core.budgets import Budget
from allotment.core.credits import CreditEntry, EntryKind, Grant, GrantKind
from allotment.core.decisions import BudgetView
from allotment.core.topups import (
    BACKOFF,
    MAX_ATTEMPTS,
    TopUp,
    TopUpState,
    TopUpStatus,
    topup_key,
)
from allotment.core.windows import Window
from allotment.errors import NotFoundError
from allotment.lifecycle import credits
from allotment.lifecycle.tx import Config, Counting, Crediting, Credits, ToppingUp, TopUps

__all__ = [
    "Outcome",
    "claim",
    "finish",
    "maybe_start",
    "report",
    "resume",
    "standing",
    "status_of",
    "topped_up",
]

_MONTH = Window.parse("month")


class _StartTx(Counting, Crediting, ToppingUp, Protocol):
    """What starting a top-up inside a commit takes."""


class _FinishTx(Config, Counting, Credits, TopUps, Protocol):
    """What finishing a paid (or refused) top-up takes."""


def _month(now: datetime) -> int:
    span = _MONTH.span(now)
    assert span is not None
    return span.bucket


def _entry(pool: credits.Pool, kind: EntryKind, amount: int, topup: TopUp) -> CreditEntry:
    return CreditEntry(
        pool.key, pool.member, kind, amount, pool.balance(), pool.now, None, f"topup:{topup.id}"
    )


def maybe_start(tx: _StartTx, budget: Budget, pool: credits.Pool) -> TopUp | None:
    """Start one top-up if ``pool``'s balance is below the threshold and none is under
    way, auto top-up is not paused, and the month's cap has room; else None."""
    auto = budget.auto_topup
    if auto is None:
        return None
    balance = pool.balance()
    if balance >= auto.threshold:
        return None
    latest = tx.latest_topup(pool.key, pool.member)
    if latest is not None and latest.state in (TopUpState.PENDING, TopUpState.FAILED):
        return None  # under way, or paused until re-enabled
    now, bucket = pool.now, _month(pool.now)
    amount = auto.to_buy(balance)
    topup = TopUp(
        uuid.uuid4().hex, pool.key, pool.member, amount, bucket, TopUpState.PENDING, now, now
    )
    # One pending top-up per member (the store's unique slot): of concurrent commits
    # crossing the threshold, one starts it; it alone moves the cap's counter.
    if not tx.start_topup(topup):
        return None
    key = (topup_key(pool.key), pool.member, bucket)
    [(used, reserved)] = tx.read_keys([key])
    if auto.monthly_cap is not None and used + reserved + amount > auto.monthly_cap:
        tx.drop_topup(topup)
        return None
    pool.deltas.append((*key, 0, amount))
    pool.entries.append(_entry(pool, EntryKind.TOPUP_STARTED, amount, topup))
    return topup


def topped_up(tx: _StartTx, pools: Sequence[tuple[Budget, credits.Pool]]) -> list[TopUp]:
    """After a commit's credit moves: start a top-up where a pool's balance ran low,
    and write each pool's moves."""
    started = []
    for budget, pool in pools:
        topup = maybe_start(tx, budget, pool)
        if topup is not None:
            started.append(topup)
        pool.flush(tx)
    return started


def status_of(tx: _StartTx, budget: Budget, pool: credits.Pool) -> TopUpStatus | None:
    """Why auto top-up is not keeping ``pool`` topped up, if it is not."""
    auto = budget.auto_topup
    if auto is None:
        return None
    latest = tx.latest_topup(pool.key, pool.member)
    if latest is not None and latest.state is TopUpState.FAILED:
        return TopUpStatus.FAILED
    if latest is not None and latest.state is TopUpState.PENDING:
        return None
    balance = pool.balance()
    if auto.monthly_cap is None or balance >= auto.threshold:
        return None
    [(used, reserved)] = tx.read_keys([(topup_key(pool.key), pool.member, _month(pool.now))])
    if used + reserved + auto.to_buy(balance) > auto.monthly_cap:
        return TopUpStatus.MONTHLY_LIMIT_REACHED
    return None


class _ClaimTx(Config, TopUps, Protocol):
    """What claiming top-ups takes."""


def report(
    tx: _StartTx, pools: Sequence[tuple[Budget, credits.Pool]], views: Sequence[BudgetView]
) -> None:
    """Say in each pool's view why auto top-up is not keeping it topped up, if it is not
    (``views``: the pools' views in the order of ``pools``, or every view of a decision)."""
    shown = {(v.budget.key, v.member): v for v in views if v.credit is not None}
    for budget, pool in pools:
        view = shown.get((pool.key, pool.member))
        if view is not None and view.credit is not None and budget.auto_topup is not None:
            view.credit.topup = status_of(tx, budget, pool)


def standing(
    tx: _StartTx, budget: Budget, member: str, now: datetime
) -> tuple[TopUpStatus | None, TopUp | None]:
    """``status_of`` a member's pool, and its latest top-up (reads only)."""
    credits.check_member(budget, member)
    pool = credits.open_pool(tx, budget.key, member, now, write=False, budget=budget)
    return status_of(tx, budget, pool), tx.latest_topup(budget.key, member)


def claim(
    tx: _ClaimTx, now: datetime, limit: int, lease: timedelta
) -> list[tuple[TopUp, Budget | None]]:
    """Due pending top-ups with their pools, each claimed for ``lease`` (a worker that
    dies mid-payment leaves it to another once the lease ends; the gateway charges
    once per top-up id)."""
    claimed = []
    for topup in tx.due_topups(now, limit):
        topup = replace(topup, claimed_until=now + lease, updated_at=now)
        tx.put_topup(topup)
        claimed.append((topup, tx.budget(topup.pool)))
    return claimed


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the gateway answered: ``succeeded``, ``declined`` or ``failed``."""

    result: str
    payment_id: str | None = None
    message: str | None = None


def finish(tx: _FinishTx, topup_id: str, outcome: Outcome, now: datetime) -> TopUp:
    """Move a top-up on by its payment's outcome (a finished one stays as it is)."""
    topup = tx.topup(topup_id)
    if topup is None:
        raise NotFoundError(f"no top-up {topup_id!r}")
    if topup.state is not TopUpState.PENDING:
        return topup
    budget = tx.budget(topup.pool)
    key = (topup_key(topup.pool), topup.member, topup.bucket)
    pool = credits.open_pool(tx, topup.pool, topup.member, now)
    if outcome.result == "succeeded" and budget is not None:
        grant = Grant(
            topup.pool, topup.member, f"topup-{topup.id[:20]}", topup.amount, GrantKind.TOP_UP,
            now, now, idempotency_key=f"topup:{topup.id}",
            metadata={"payment_id": outcome.payment_id or ""},
        )  # fmt: skip
        pool.flush(tx)
        credits.add_grant(tx, budget, grant, now)
        tx.add([(*key, topup.amount, -topup.amount)])
        done = replace(topup, state=TopUpState.SUCCEEDED, updated_at=now, grant_id=grant.id,
                       claimed_until=None)  # fmt: skip
    elif outcome.result == "declined" and topup.attempts + 1 < MAX_ATTEMPTS:
        wait = BACKOFF[topup.attempts]
        done = replace(topup, attempts=topup.attempts + 1, next_attempt_at=now + wait,
                       claimed_until=None, updated_at=now, error=outcome.message)  # fmt: skip
        tx.append_credits([_entry(pool, EntryKind.TOPUP_DECLINED, topup.amount, topup)])
    else:  # failed, declined once too often, or its pool is gone: pause until re-enabled
        tx.add([(*key, 0, -topup.amount)])
        done = replace(topup, state=TopUpState.FAILED, attempts=topup.attempts + 1,
                       claimed_until=None, updated_at=now,
                       error=outcome.message or outcome.result)  # fmt: skip
        tx.append_credits([_entry(pool, EntryKind.TOPUP_FAILED, topup.amount, topup)])
    pool.flush(tx)
    tx.put_topup(done)
    return done


def resume(tx: _FinishTx, budget: Budget, member: str, now: datetime) -> bool:
    """Re-enable auto top-up after a failed payment; False if it was not paused."""
    credits.check_member(budget, member)
    latest = tx.latest_topup(budget.key, member)
    if latest is None or latest.state is not TopUpState.FAILED:
        return False
    tx.put_topup(replace(latest, state=TopUpState.RESUMED, updated_at=now))
    pool = credits.open_pool(tx, budget.key, member, now)
    tx.append_credits([_entry(pool, EntryKind.TOPUP_RESUMED, 0, latest)])
    pool.flush(tx)
    return True
