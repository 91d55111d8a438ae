"""The Governor's credit pools: grants added, voided and listed, and the credit ledger.

``Governor`` inherits these; they need only its store and clock. A pool is a
budget with ``credits: true`` (``allotment.core.credits``); amounts are given
in the pool meter's human units, like a budget's ``limit``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from allotment.core.budgets import Budget
from allotment.core.credits import CreditEntry, Grant, GrantKind
from allotment.core.money import decimal_to_units
from allotment.core.subjects import check_identifier
from allotment.core.topups import TopUp, TopUpStatus
from allotment.core.usage import Meter
from allotment.errors import ValidationError
from allotment.lifecycle.credits import PoolStatus, check_pool
from allotment.lifecycle.topups import Outcome
from allotment.payments import PaymentGateway, PaymentRequest
from allotment.store import Store

__all__ = ["TOPUP_INTERVAL", "CreditPools", "TopUpWorker"]

_log = logging.getLogger("allotment.topups")

_MAX_PAGE = 1000
T = TypeVar("T")


class CreditPools:
    """Credit pools: their grants and their credit ledger; auto top-ups through ``gateway``."""

    store: Store
    gateway: PaymentGateway | None
    _topup_worker: TopUpWorker | None

    def now(self) -> datetime:
        """The current time (the Governor's clock)."""
        raise NotImplementedError

    def get_pool(self, pool: str, *, tenant: str | None = None) -> Budget:
        """The credit pool ``pool`` as ``tenant`` sees it: a budget with ``credits: true``,
        or a plan's (``core.credits``); ValidationError naming ``pool`` if it is no pool."""
        budget = self.store.find_pool(pool, tenant)
        check_pool(budget)
        return budget

    def add_grant(
        self,
        pool: str,
        amount: Decimal | int | str,
        *,
        tenant: str | None = None,
        member: str = "",
        kind: str = "purchase",
        priority: int = 0,
        effective_at: datetime | None = None,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
        metadata: Mapping[str, str] | None = None,
        grant_id: str | None = None,
    ) -> tuple[Grant, bool]:
        """Add a grant of ``amount`` (human units of the pool's meter) to pool ``pool``.

        Idempotent per ``idempotency_key`` (a payment id): the same grant again
        answers the one added before, with ``False``; other terms under the same
        key are a ConflictError. A new grant repays the member's debt first.
        Returns the grant and whether it was added now.
        """
        budget = self.store.find_pool(pool, tenant)
        now = self.now()
        check_identifier(idempotency_key, "idempotency_key")
        check_identifier(member or None, "member")
        grant = Grant(
            pool=budget.key,
            member=member,
            id=grant_id or f"g_{uuid.uuid4().hex[:20]}",
            amount=decimal_to_units(amount, budget.meter.scale, "amount"),
            kind=_kind(kind),
            effective_at=effective_at or now,
            created_at=now,
            expires_at=expires_at,
            priority=priority,
            idempotency_key=idempotency_key,
            metadata=dict(metadata or {}),
        )
        return self.store.add_grant(budget, grant, now)

    def void_grant(
        self, pool: str, grant_id: str, *, tenant: str | None = None, member: str = ""
    ) -> Grant:
        """Void a grant: what it has left is gone; calls holding it keep their hold.
        Voiding twice changes nothing."""
        budget = self.store.find_pool(pool, tenant)
        return self.store.void_grant(budget, member, grant_id, self.now())

    def pool(self, pool: str, *, tenant: str | None = None, member: str = "") -> PoolStatus:
        """Where ``member``'s credit stands: each grant's balance, the total, the debt."""
        budget = self.store.find_pool(pool, tenant)
        return self.store.pool_status(budget, member, self.now())

    def credit_ledger(
        self,
        pool: str,
        *,
        tenant: str | None = None,
        member: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[CreditEntry]:
        """A page of the pool's credit ledger (every member's, or ``member``'s), oldest
        first, after entry ``after_id``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= _MAX_PAGE:
            raise ValidationError("limit", f"must be 1-{_MAX_PAGE}")
        if isinstance(after_id, bool) or not isinstance(after_id, int) or after_id < 0:
            raise ValidationError("after_id", "must be a non-negative integer")
        budget = self.store.find_pool(pool, tenant)
        check_pool(budget)
        return self.store.credit_entries(budget, member, after_id, limit)

    # auto top-ups
    def run_topups(self, limit: int = 10) -> list[TopUp]:
        """Pay the due top-ups through the gateway; returns each as it ended up.

        The service and a Governor built with a ``gateway`` run this in the
        background after a commit starts a top-up (and every
        ``TOPUP_INTERVAL`` while any is pending); tests and scripts may call it.
        """
        gateway = self.gateway
        if gateway is None:
            return []
        done = []
        for topup, budget in self.store.claim_topups(self.now(), limit, _LEASE):
            if budget is None:
                outcome = Outcome("failed", message="its pool was deleted")
            else:
                outcome = _pay(gateway, topup, budget)
            done.append(self.store.finish_topup(topup.id, outcome, self.now()))
        return done

    def resume_topups(self, pool: str, *, tenant: str | None = None, member: str = "") -> bool:
        """Re-enable auto top-up after a failed payment; False if it was not paused."""
        budget = self.store.find_pool(pool, tenant)
        return self.store.resume_topups(budget, member, self.now())

    def topup_status(
        self, pool: str, *, tenant: str | None = None, member: str = ""
    ) -> tuple[TopUpStatus | None, TopUp | None]:
        """Why auto top-up is not keeping ``member``'s credit topped up (None: it is, or
        the pool has none), and the member's latest top-up; read in one transaction, by
        the rule decisions and the 402 use (``lifecycle.topups.status_of``)."""
        budget = self.store.find_pool(pool, tenant)
        return self.store.topup_status(budget, member, self.now())

    def _topups_started(self, started: tuple[str, ...]) -> None:
        """A commit started top-ups: have the worker pay them."""
        if started and self._topup_worker is not None:
            self._topup_worker.wake()


def _pay(gateway: PaymentGateway, topup: TopUp, budget: Budget) -> Outcome:
    unit = budget.currency or ("USD" if budget.meter is Meter.COST else budget.meter.value)
    request = PaymentRequest(
        topup.id, budget.tenant, budget.id, topup.member, budget.human(topup.amount), unit,
        topup.attempts + 1,
    )  # fmt: skip
    try:
        result = gateway.charge(request)
    except Exception as exc:  # a gateway that raises has not paid: try again later
        return Outcome("declined", message=f"gateway raised {type(exc).__name__}: {exc}")
    return Outcome(result.outcome, result.payment_id, result.message)


#: how long a worker may take to pay one claimed top-up before another may claim it
_LEASE = timedelta(minutes=5)
#: how often the background worker looks for due top-ups (declines back off for longer)
TOPUP_INTERVAL = 30.0


class TopUpWorker:
    """A daemon thread paying due top-ups: woken by commits, else every ``TOPUP_INTERVAL``."""

    def __init__(self, run: Callable[[], object], interval: float = TOPUP_INTERVAL) -> None:
        self._run = run
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="allotment-topups", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._run()
            except Exception:  # the store down, say: the next round tries again
                _log.exception("auto top-up round failed")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _kind(value: Any) -> GrantKind:
    try:
        return GrantKind(value)
    except ValueError:
        choices = ", ".join(k.value for k in GrantKind)
        raise ValidationError("kind", f"unknown kind {value!r} (one of {choices})") from None
