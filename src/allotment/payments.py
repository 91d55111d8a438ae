"""Payment gateways for auto top-ups: where allotment asks for a top-up to be paid.

A gateway gets one ``PaymentRequest`` per attempt and answers a
``PaymentResult``: ``succeeded`` (a ``top_up`` grant is added), ``declined``
(tried again after a back-off) or ``failed`` (auto top-up pauses until it is
re-enabled). ``request.topup_id`` is the idempotency key: a gateway must
charge at most once per top-up id, whatever the number of attempts (a
declined attempt charged nothing; a worker that died mid-call is replaced by
another asking again with the same id).

- ``CallableGateway``: a Python function.
- ``HttpsGateway``: a POST of the request as JSON to a configured URL, signed
  the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature: v1,…`` with a ``whsec_`` secret), as allotment's
  webhooks are; the endpoint answers ``{"outcome", "payment_id"?, "message"?}``.
- ``TestGateway``: succeeds, fails, or declines after N: for demos and tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

__all__ = [
    "OUTCOMES",
    "CallableGateway",
    "HttpsGateway",
    "PaymentGateway",
    "PaymentRequest",
    "PaymentResult",
    "TestGateway",
]

OUTCOMES = ("succeeded", "declined", "failed")


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """Pay for one top-up: ``amount`` in human units of ``unit`` (a currency code for a
    cost pool, else the pool's meter: ``credits``, ``tokens``)."""

    topup_id: str
    tenant: str | None
    pool: str
    member: str
    amount: Decimal
    unit: str
    attempt: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "topup_id": self.topup_id,
            "tenant": self.tenant,
            "pool": self.pool,
            "member": self.member,
            "amount": str(self.amount),
            "unit": self.unit,
            "attempt": self.attempt,
        }


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """A gateway's answer."""

    outcome: str
    payment_id: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")


class PaymentGateway(Protocol):
    """Charges for top-ups."""

    def charge(self, request: PaymentRequest) -> PaymentResult: ...


@dataclass(slots=True)
class CallableGateway:
    """A Python function as the gateway."""

    function: Callable[[PaymentRequest], PaymentResult]

    def charge(self, request: PaymentRequest) -> PaymentResult:
        return self.function(request)


@dataclass(slots=True)
class HttpsGateway:
    """POST each request, signed with ``secret`` (``whsec_…``), to ``url``.

    An answer that is not a 2xx with a known outcome (a timeout, a 500, a
    refused connection) is a decline: tried again after the back-off, with the
    same top-up id, so the endpoint can tell a retry from a new payment.
    """

    url: str
    secret: str
    timeout: float = 10.0
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0))

    def charge(self, request: PaymentRequest) -> PaymentResult:
        body = orjson.dumps(request.to_dict())
        message_id = f"msg_{request.topup_id}_{request.attempt}"
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(self.secret).sign(message_id, now, body),
        }
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return PaymentResult("declined", message=f"gateway unreachable: {exc}")
        if not response.is_success:
            return PaymentResult("declined", message=f"gateway answered {response.status_code}")
        try:
            answer = orjson.loads(response.content)
            return PaymentResult(
                str(answer["outcome"]), answer.get("payment_id"), answer.get("message")
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return PaymentResult("declined", message="gateway answer not understood")


@dataclass
class TestGateway:
    """A gateway for demos and tests: answers ``outcome``, or ``then`` once ``after``
    top-ups have been paid. One payment per top-up id, however often it is asked."""

    __test__ = False  # not a pytest test class

    outcome: str = "succeeded"
    after: int | None = None
    then: str = "declined"
    requests: list[PaymentRequest] = field(default_factory=list)
    paid: dict[str, PaymentResult] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def charge(self, request: PaymentRequest) -> PaymentResult:
        with self._lock:
            self.requests.append(request)
            done = self.paid.get(request.topup_id)
            if done is not None:
                return done
            outcome = self.outcome
            if self.after is not None and len(self.paid) >= self.after:
                outcome = self.then
            if outcome != "succeeded":
                return PaymentResult(outcome, message=f"test gateway: {outcome}")
            result = PaymentResult("succeeded", payment_id=f"pay_{len(self.paid) + 1}")
            self.paid[request.topup_id] = result
            return result
