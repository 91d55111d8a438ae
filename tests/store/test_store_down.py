"""When the store cannot be reached: fail-closed budgets refuse, fail-open ones allow.

And when it cannot be written (a full disk) every call says so with
``StoreError`` and leaves nothing half written; a value the database refuses
is bad input (``InvalidData``), never mistaken for an outage.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app
from allotment.core.budgets import Call
from allotment.core.ledger import Event
from allotment.errors import InvalidData, StoreError
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.conftest import drop_postgres, store_url


def broken(tmp_path: Path) -> Governor:
    gov = Governor(f"sqlite:///{tmp_path / 'a.db'}")
    for tenant, failure in (("open", "fail_open"), ("closed", "fail_closed")):
        gov.create_budget({"id": tenant, "tenant": tenant, "meter": "tokens", "window": "day",
                           "limit": 100, "failure": failure})  # fmt: skip
        assert gov.authorize(f"warm-{tenant}", {"tenant": tenant}, "o", "m").allowed
    gov.store.close()  # the file goes away: every new connection now fails
    gov.store.path = str(tmp_path / "gone" / "a.db")  # type: ignore[attr-defined]
    return gov


def test_fail_open_allows_and_says_so(tmp_path: Path) -> None:
    gov = broken(tmp_path)
    decision = gov.authorize("r1", {"tenant": "open"}, "o", "m", {"output_tokens": 10})
    assert decision.allowed and decision.degraded
    with pytest.raises(StoreError):
        gov.authorize("r2", {"tenant": "closed"}, "o", "m", {"output_tokens": 10})
    with pytest.raises(StoreError):  # nothing acknowledged is lost: the commit is refused
        gov.commit("r1", {"output_tokens": 10})


def test_service_answers_503_or_allows_degraded(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'a.db'}")
    _, admin = gov.create_key("admin")
    client = TestClient(create_app(gov))
    headers = {"Authorization": f"Bearer {admin}"}
    for tenant, failure in (("open", "fail_open"), ("closed", "fail_closed")):
        budget = {"id": tenant, "tenant": tenant, "meter": "tokens", "window": "day",
                  "limit": 100, "failure": failure}  # fmt: skip
        assert client.post("/v1/budgets", json=budget, headers=headers).status_code == 201

    def authorize(rid: str, tenant: str) -> Any:
        body = {"request_id": rid, "subject": {"tenant": tenant}, "provider": "o", "model": "m"}
        return client.post("/v1/authorize", json=body, headers=headers)

    assert authorize("warm", "open").status_code == 200  # the key and budgets are now known
    gov.store.close()  # the file goes away: every new connection now fails
    gov.store.path = str(tmp_path / "gone" / "a.db")  # type: ignore[attr-defined]
    closed = authorize("r1", "closed")
    assert closed.status_code == 503 and closed.json()["error"]["code"] == "store_unavailable"
    opened = authorize("r2", "open")
    assert opened.status_code == 200 and opened.json()["degraded"]
    assert client.get("/readyz").status_code == 503
    metrics = client.get("/metrics").text
    assert 'allotment_decisions_total{outcome="allowed",reason="store_unavailable"}' in metrics


def test_sqlite_reads_do_not_queue_behind_the_writer(tmp_path: Path) -> None:
    """status, usage and the ledger read a snapshot; they never take the write lock."""
    import threading

    gov = Governor(f"sqlite:///{tmp_path / 'r.db'}")
    gov.create_budget({"id": "d", "tenant": "acme", "meter": "tokens", "window": "day",
                       "limit": 100})  # fmt: skip
    gov.record("p", {"tenant": "acme"}, "o", "m", {"input_tokens": 5})
    lock = gov.store._write_lock  # type: ignore[attr-defined]
    answers: list[object] = []

    def read() -> None:
        answers.append(gov.status({"tenant": "acme"})[0].used)
        answers.append(len(gov.events()))
        answers.append(gov.usage("acme")[0].calls)

    with lock:  # a writer in the middle of its transaction
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), "a read waited for the write lock"
    assert answers == [5, 1, 1]
    gov.close()


# A full disk: SQLite's max_page_count caps the file where it stands, and
# growing it fails with SQLITE_FULL ("database or disk is full"), as on a full disk.

CAP = {"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 10**9}
SUBJECT = {"tenant": "acme", "user": "ann"}


@contextmanager
def disk_full(gov: Governor) -> Iterator[None]:
    """No room to grow the database file until the block ends (SQLite's one writer)."""
    writer: sqlite3.Connection = gov.store._writer  # type: ignore[attr-defined]
    (before,) = writer.execute("PRAGMA max_page_count").fetchone()
    (pages,) = writer.execute("PRAGMA page_count").fetchone()
    writer.execute(f"PRAGMA max_page_count={pages}")
    try:
        yield
    finally:
        writer.execute(f"PRAGMA max_page_count={before}")


def ledger(gov: Governor) -> list[Event]:
    return gov.events(EventQuery(limit=10_000))


def assert_consistent(gov: Governor) -> None:
    """Counters match a rebuild from the ledger, and no request id was counted twice."""
    live = gov.store.counters()
    gov.rebuild()
    assert gov.store.counters() == live
    ids = Counter(e.request_id for e in ledger(gov) if e.status.value == "success")
    assert max(ids.values(), default=1) == 1


def until_full(attempt: Callable[[int], object], tries: int = 2000) -> int:
    """Run ``attempt(i)`` for i = 0, 1, ... until one raises StoreError; that i."""
    for i in range(tries):
        try:
            attempt(i)
        except StoreError as exc:
            assert isinstance(exc.__cause__, sqlite3.Error)
            assert "full" in str(exc)
            return i
    raise AssertionError("the database never filled up")


def test_a_full_disk_fails_commits_with_store_error_and_keeps_nothing(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'full.db'}")
    gov.create_budget(CAP)
    for i in range(2000):
        gov.authorize(f"c{i}", SUBJECT, "openai", "gpt-4o", {"output_tokens": 10})
    with disk_full(gov):
        failed = until_full(lambda i: gov.commit(f"c{i}", {"output_tokens": 7}))
        assert f"c{failed}" not in {e.request_id for e in ledger(gov)}
        assert gov.status(SUBJECT)[0].reserved == 10 * (2000 - failed)  # still held
        with pytest.raises(StoreError):  # still full: the same retry fails the same way
            gov.commit(f"c{failed}", {"output_tokens": 7})
    result = gov.commit(f"c{failed}", {"output_tokens": 7})  # room again: the retry succeeds
    assert not result.replayed
    assert [e.request_id for e in ledger(gov)].count(f"c{failed}") == 1
    assert gov.status(SUBJECT)[0].used == 7 * (failed + 1)
    assert_consistent(gov)
    gov.close()


def test_a_full_disk_fails_a_batch_of_events_whole(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'full.db'}")
    gov.create_budget(CAP)

    def batch(i: int) -> list[dict[str, Any]]:
        return [{"request_id": f"e{i}-{k}", "subject": SUBJECT, "provider": "openai",
                 "model": "gpt-4o", "usage": {"input_tokens": 3}} for k in range(5)]  # fmt: skip

    with disk_full(gov):
        failed = until_full(lambda i: gov.record_many(batch(i)))
        assert not [e for e in ledger(gov) if e.request_id.startswith(f"e{failed}-")]
    assert len(gov.record_many(batch(failed))) == 5
    assert len([e for e in ledger(gov) if e.request_id.startswith(f"e{failed}-")]) == 5
    assert gov.status(SUBJECT)[0].used == 3 * 5 * (failed + 1)
    assert_consistent(gov)
    gov.close()


def test_a_full_disk_fails_every_call_of_a_group_commit_at_once(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'full.db'}")
    gov.create_budget(CAP)
    store: Any = gov.store

    async def commit_all(start: int) -> list[object]:
        calls = [gov.commit_async(f"g{start + k}", {"input_tokens": 1}, subject=SUBJECT,
                                  provider="openai", model="gpt-4o") for k in range(8)]  # fmt: skip
        return await asyncio.gather(*calls, return_exceptions=True)

    with disk_full(gov):
        for start in range(0, 4000, 8):
            answers = asyncio.run(commit_all(start))
            if any(isinstance(a, BaseException) for a in answers):
                break
        fallbacks = store.batch_fallbacks
        assert all(isinstance(a, StoreError) for a in asyncio.run(commit_all(10_000)))
        assert store.batch_fallbacks == fallbacks  # not re-run one by one
    assert not {a for a in asyncio.run(commit_all(10_000)) if isinstance(a, BaseException)}
    assert_consistent(gov)
    gov.close()


def test_a_full_disk_is_503_json_on_the_service(tmp_path: Path) -> None:
    gov = Governor(f"sqlite:///{tmp_path / 'full.db'}")
    _, admin = gov.create_key("admin")
    client = TestClient(create_app(gov))
    headers = {"Authorization": f"Bearer {admin}"}
    assert client.post("/v1/budgets", json=CAP, headers=headers).status_code == 201

    def commit(i: int) -> Any:
        body = {"request_id": f"h{i}", "usage": {"input_tokens": 2}, "subject": SUBJECT,
                "provider": "openai", "model": "gpt-4o"}  # fmt: skip
        return client.post("/v1/commit", json=body, headers=headers)

    def events(i: int) -> Any:
        items = [{"request_id": f"b{i}-{k}", "subject": SUBJECT, "provider": "openai",
                  "model": "gpt-4o", "usage": {"input_tokens": 2}} for k in range(4)]  # fmt: skip
        return client.post("/v1/events", json={"events": items}, headers=headers)

    errors_before = store_errors(client)
    for call in (commit, events):
        with disk_full(gov):
            for i in range(2000):
                answer = call(i)
                if answer.status_code != 200:
                    break
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/json"
            assert answer.json()["error"]["code"] == "store_unavailable"
        assert call(i).status_code == 200  # room again: the same retry succeeds
    assert store_errors(client) == errors_before + 2
    assert_consistent(gov)
    gov.close()


def store_errors(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("allotment_store_errors_total "):
            return float(line.split()[1])
    raise AssertionError("allotment_store_errors_total is not exported")


class Failing:
    """A SQLite connection whose chosen statements fail as an I/O error would."""

    def __init__(self, conn: sqlite3.Connection, failing: set[str]) -> None:
        self._conn = conn
        self._failing = failing

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if any(sql.startswith(f) for f in self._failing):
            raise sqlite3.OperationalError(f"disk I/O error ({sql.split()[0]})")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize(
    ("failing", "cause"),
    [
        ({"BEGIN"}, "BEGIN"),
        ({"INSERT INTO events"}, "INSERT"),
        ({"COMMIT"}, "COMMIT"),
        ({"COMMIT", "ROLLBACK"}, "COMMIT"),
        ({"INSERT INTO events", "ROLLBACK"}, "INSERT"),
    ],
)
def test_every_failure_of_a_sqlite_transaction_is_a_store_error(
    tmp_path: Path, failing: set[str], cause: str
) -> None:
    """BEGIN, a statement, COMMIT or ROLLBACK failing: StoreError from the first failure."""
    gov = Governor(f"sqlite:///{tmp_path / 'io.db'}")
    gov.create_budget(CAP)
    store: Any = gov.store
    store._writer = Failing(store._writer, failing)
    with pytest.raises(StoreError) as caught:
        gov.record("r", SUBJECT, "openai", "gpt-4o", {"input_tokens": 4})
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert f"({cause})" in str(caught.value)  # a failed ROLLBACK never hides the first error
    if isinstance(store._writer, Failing):
        store._writer = store._writer._conn
    assert not ledger(gov)
    gov.record("r", SUBJECT, "openai", "gpt-4o", {"input_tokens": 4})
    assert [e.request_id for e in ledger(gov)] == ["r"]
    assert_consistent(gov)
    gov.close()


# Data errors: what the database refuses as a value is bad input, not an outage.


@pytest.fixture(params=["sqlite", "postgres"])
def sql_governor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Governor]:
    url = store_url(request.param, tmp_path)
    gov = Governor(url)
    gov.create_budget({**CAP, "failure": "fail_open"})
    yield gov
    gov.close()
    if request.param == "postgres":
        drop_postgres(url)


def refused_or_stored(call: Callable[..., object], *args: object) -> None:
    """``call`` may succeed (SQLite keeps a NUL) or be refused as data, never as an outage."""
    try:
        call(*args)
    except InvalidData as exc:
        assert exc.field and "refused a value" in exc.message
    except StoreError as exc:
        raise AssertionError(f"a data error was taken for an outage: {exc}") from exc


@pytest.mark.parametrize("text", ["a\x00b", "plain"])
def test_a_nul_byte_reaching_the_store_is_not_an_outage(sql_governor: Governor, text: str) -> None:
    """Boundary validation refuses NUL bytes; behind it, the store still never says 503."""
    gov, store = sql_governor, sql_governor.store
    now = gov.now()
    # Requests built as the Governor builds them, then spoiled.
    authorize, _ = gov._authorize_request(
        "ok", SUBJECT, "openai", "gpt-4o", {"output_tokens": 5}, None, None
    )
    authorize.request_id = f"id-{text}"
    refused_or_stored(store.authorize, authorize, now)
    commit = gov._commit_request(
        "post", {"input_tokens": 1}, "success", None, "openai", "gpt-4o", SUBJECT, None
    )
    commit.reason = text
    refused_or_stored(store.commit, commit, now)
    record = gov._record_request(
        "rec", SUBJECT, "openai", "gpt-4o", {"input_tokens": 1}, "success", now, None
    )
    record.call = Call(record.call.subject, f"prov-{text}", "gpt-4o")
    refused_or_stored(store.record, record, now)
    refused_or_stored(store.record_many, [record], now)
    assert gov.authorize("after", SUBJECT, "openai", "gpt-4o", {"output_tokens": 5}).allowed
    assert_consistent(gov)


def test_a_nul_byte_in_a_group_commit_fails_only_its_own_call(sql_governor: Governor) -> None:
    gov, store = sql_governor, sql_governor.store
    now = gov.now()

    async def authorize_all() -> list[object]:
        requests = []
        for i in range(10):
            request, _ = gov._authorize_request(
                f"g{i}", SUBJECT, "openai", "gpt-4o", {"output_tokens": 5}, None, None
            )
            if i == 4:
                request.request_id = "g\x00bad"
            requests.append(request)
        calls = [store.authorize_async(r, now) for r in requests]  # type: ignore[attr-defined]
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(authorize_all())
    assert not [a for a in answers if isinstance(a, StoreError)]
    assert sum(not isinstance(a, BaseException) for a in answers) >= 9
    assert gov.status(SUBJECT)[0].reserved >= 45
    assert_consistent(gov)
