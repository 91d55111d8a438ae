"""Auto top-up (issue 18): one top-up when the balance runs low, paid through a gateway.

On every backend: exactly one top-up per crossing, a monthly cap that is a
hard limit, declines that back off and end in a pause, failures that pause
until re-enabled, and every step in the credit ledger.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from allotment.core.topups import TopUpState, TopUpStatus
from allotment.governor import Governor
from allotment.payments import HttpsGateway, PaymentRequest, PaymentResult, TestGateway
from tests.conftest import Clock

ACME = {"tenant": "acme", "user": "u1"}


def topped_pool(gov: Governor, **auto: Any) -> None:
    gov.create_budget({"id": "extra", "tenant": "acme", "meter": "tokens", "window": "month",
                       "limit": 0, "credits": True,
                       "auto_topup": {"threshold": 20, "amount": 50, **auto}})  # fmt: skip
    gov.add_grant("extra", 50, grant_id="first")


def spend(gov: Governor, request_id: str, n: int) -> tuple[str, ...]:
    assert gov.authorize(request_id, ACME, "openai", "m", {"input_tokens": n}).allowed
    return gov.commit(request_id, {"input_tokens": n}).topups


def kinds(gov: Governor) -> list[str]:
    return [e.kind.value for e in gov.credit_ledger("extra")]


def test_a_commit_below_the_threshold_starts_one_top_up(
    make_governor: Callable[..., Governor],
) -> None:
    gateway = TestGateway()
    gov = make_governor(gateway=gateway, topup_worker=False)
    topped_pool(gov)
    assert spend(gov, "r1", 20) == ()  # 30 left: above the threshold
    [started] = spend(gov, "r2", 15)  # 15 left: below
    assert spend(gov, "r3", 5) == ()  # one is under way: no second
    [paid] = gov.run_topups()
    assert (paid.id, paid.state, paid.amount) == (started, TopUpState.SUCCEEDED, 50)
    assert gateway.requests[0].amount == 50 and gateway.requests[0].pool == "extra"
    assert gov.pool("extra").available == 60
    assert kinds(gov)[-3:] == ["topup_started", "debit", "grant"]
    assert [g.grant.kind.value for g in gov.pool("extra").grants] == ["purchase", "top_up"]
    assert gov.run_topups() == []  # nothing more is due


def test_target_buys_up_to_the_target_balance(make_governor: Callable[..., Governor]) -> None:
    gov = make_governor(gateway=TestGateway(), topup_worker=False)
    gov.create_budget({"id": "extra", "tenant": "acme", "meter": "tokens", "window": "month",
                       "limit": 0, "credits": True,
                       "auto_topup": {"threshold": 20, "target": 100}})  # fmt: skip
    gov.add_grant("extra", 50)
    spend(gov, "r1", 40)  # 10 left
    [paid] = gov.run_topups()
    assert paid.amount == 90
    assert gov.pool("extra").available == 100


def test_the_monthly_cap_is_never_passed(
    make_governor: Callable[..., Governor], clock: Clock
) -> None:
    gov = make_governor(gateway=TestGateway(), topup_worker=False)
    topped_pool(gov, monthly_cap=110)
    for i, n in enumerate((35, 50, 50)):  # each leaves 15, below the threshold of 20
        spend(gov, f"r{i}", n)
        gov.run_topups()
    bought = [g for g in gov.pool("extra").grants if g.grant.kind.value == "top_up"]
    assert len(bought) == 2  # a third 50 would pass the cap of 110
    refused = gov.authorize("big", ACME, "openai", "m", {"input_tokens": 1000})
    credit = refused.budgets[0].credit
    assert credit is not None and credit.topup is TopUpStatus.MONTHLY_LIMIT_REACHED
    [view] = gov.status(ACME)
    assert view.credit is not None and view.credit.topup is TopUpStatus.MONTHLY_LIMIT_REACHED
    shown = view.to_dict(client=True)["extra_credit"]["auto_topup"]
    assert shown["status"] == "auto_topup_monthly_limit_reached" and "month" in shown["message"]
    clock.advance(days=31)  # a new month: the cap has room again
    assert len(spend(gov, "next-month", 1)) == 1


def test_declines_back_off_then_pause_until_re_enabled(
    make_governor: Callable[..., Governor], clock: Clock
) -> None:
    gateway = TestGateway(outcome="declined")
    gov = make_governor(gateway=gateway, topup_worker=False)
    topped_pool(gov)
    spend(gov, "r1", 40)
    [declined] = gov.run_topups()
    assert (declined.state, declined.attempts) == (TopUpState.PENDING, 1)
    assert gov.run_topups() == []  # not due yet: backing off, never in a loop
    waits = [1, 10, 60]
    for minutes in waits:
        clock.advance(minutes=minutes)
        [again] = gov.run_topups()
    assert again.state is TopUpState.FAILED and len(gateway.requests) == 4
    assert {r.topup_id for r in gateway.requests} == {declined.id}  # one top-up, retried
    assert spend(gov, "r2", 5) == ()  # paused: no new top-up
    [view] = gov.status(ACME)
    assert view.credit is not None and view.credit.topup is TopUpStatus.FAILED
    assert kinds(gov).count("topup_declined") == 3 and kinds(gov)[-1] == "debit"
    assert gov.resume_topups("extra")
    assert not gov.resume_topups("extra")
    gateway.outcome = "succeeded"
    assert len(spend(gov, "r3", 1)) == 1
    [paid] = gov.run_topups()
    assert paid.state is TopUpState.SUCCEEDED


def test_a_failed_payment_pauses_and_says_so(make_governor: Callable[..., Governor]) -> None:
    gov = make_governor(gateway=TestGateway(outcome="failed"), topup_worker=False)
    topped_pool(gov)
    spend(gov, "r1", 45)
    [failed] = gov.run_topups()
    assert failed.state is TopUpState.FAILED
    refused = gov.authorize("r2", ACME, "openai", "m", {"input_tokens": 10})
    assert not refused.allowed
    body = refused.to_dict()["budgets"][0]["credit"]["auto_topup"]
    assert body["status"] == "auto_topup_failed" and "payment" in body["message"]
    assert "topup_failed" in kinds(gov)


def test_a_gateway_that_raises_is_a_decline(make_governor: Callable[..., Governor]) -> None:
    def broken(request: PaymentRequest) -> PaymentResult:
        raise ConnectionError("down")

    from allotment.payments import CallableGateway

    gov = make_governor(gateway=CallableGateway(broken), topup_worker=False)
    topped_pool(gov)
    spend(gov, "r1", 45)
    [declined] = gov.run_topups()
    assert declined.state is TopUpState.PENDING and "ConnectionError" in (declined.error or "")


def test_the_worker_pays_in_the_background(tmp_path: Any) -> None:
    gateway = TestGateway()
    with Governor(f"sqlite:///{tmp_path / 'a.db'}", gateway=gateway) as gov:
        topped_pool(gov)
        spend(gov, "r1", 45)
        deadline = time.monotonic() + 5
        while not gateway.paid and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(gateway.paid) == 1
        deadline = time.monotonic() + 5
        while gov.pool("extra").available != 55 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gov.pool("extra").available == 55


@pytest.fixture
def payment_endpoint() -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """A payment provider's endpoint that checks the Standard Webhooks signature."""
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            Webhook(secret).verify(body, dict(self.headers.items()))  # raises if unsigned
            seen.append(json.loads(body))
            answer = json.dumps({"outcome": "succeeded", "payment_id": "pi_1"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/pay", secret, seen
    server.shutdown()
    server.server_close()


def test_an_https_gateway_gets_a_signed_request(
    make_governor: Callable[..., Governor],
    payment_endpoint: tuple[str, str, list[dict[str, Any]]],
) -> None:
    url, secret, seen = payment_endpoint
    gov = make_governor(gateway=HttpsGateway(url, secret), topup_worker=False)
    topped_pool(gov)
    spend(gov, "r1", 45)
    [paid] = gov.run_topups()
    assert paid.state is TopUpState.SUCCEEDED
    assert seen[0]["topup_id"] == paid.id and seen[0]["amount"] == "50" and seen[0]["attempt"] == 1
    [grant] = [g for g in gov.pool("extra").grants if g.grant.kind.value == "top_up"]
    assert grant.grant.metadata == {"payment_id": "pi_1"}
