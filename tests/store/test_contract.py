"""The store contract: every backend must behave exactly alike.

Runs through the Governor so the public semantics are what is pinned.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from allotment.core.decisions import Reason, State
from allotment.core.ledger import EventStatus, ReservationState
from allotment.core.usage import Usage
from allotment.errors import ConflictError, NotFoundError, ValidationError
from allotment.governor import Governor
from allotment.store.base import EventQuery
from tests.conftest import Clock

ACME = {"tenant": "acme", "user": "u1", "feature": "chat"}


def tokens(n_in: int, n_out: int = 0) -> dict[str, int]:
    return {"input_tokens": n_in, "output_tokens": n_out}


def day_budget(limit: int = 1000, **extra: Any) -> dict[str, Any]:
    return {"id": "acme-day", "tenant": "acme", "meter": "tokens", "window": "day"} | {
        "limit": limit,
        **extra,
    }


def used(gov: Governor, budget_id: str = "acme-day", subject: Any = ACME) -> tuple[int, int]:
    view = next(v for v in gov.status(subject) if v.budget_id == budget_id)
    return view.used, view.reserved


class TestAuthorize:
    def test_reserves_on_every_applicable_budget(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.create_budget(day_budget(id="acme-month", window="month", limit=5000))
        decision = gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100, 50))
        assert decision.allowed
        assert {v.budget_id: v.reserved for v in decision.budgets} == {
            "acme-day": 150,
            "acme-month": 150,
        }
        assert used(gov) == (0, 150)

    def test_refusal_reserves_nothing_anywhere(self, gov: Governor) -> None:
        gov.create_budget(day_budget(limit=100))
        gov.create_budget(day_budget(id="acme-month", window="month", limit=5000))
        decision = gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(200))
        assert not decision.allowed
        assert decision.reason is Reason.ESTIMATE_EXCEEDS_REMAINING
        assert decision.refusals[0].budget_id == "acme-day"
        assert decision.refusals[0].remaining == 100
        assert used(gov, "acme-month") == (0, 0)
        blocked = gov.events(EventQuery(status=EventStatus.BLOCKED))
        assert [(e.request_id, e.reason, e.budget_id) for e in blocked] == [
            ("r1", "estimate_exceeds_remaining", "acme-day")
        ]

    def test_blocked_and_released_events_used_nothing(self, gov: Governor, clock: Clock) -> None:
        """System 3: a blocked event carries zero usage and zero cost; the refused
        estimate is kept apart, as is a released reservation's."""
        gov.create_budget(day_budget(limit=100))
        assert not gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(200)).allowed
        assert gov.authorize("r2", ACME, "openai", "gpt-4o", tokens(50), ttl=1).allowed
        gov.release("r2")
        assert gov.authorize("r3", ACME, "openai", "gpt-4o", tokens(50), ttl=1).allowed
        clock.advance(seconds=2)
        assert gov.sweep() == 1
        events = {e.request_id: e for e in gov.events()}
        for request_id, estimated in (("r1", 200), ("r2", 50), ("r3", 50)):
            event = events[request_id]
            assert event.usage.tokens == 0 and event.usage.requests == 0
            assert event.usage.cost_micros == 0
            assert event.estimate is not None and event.estimate.tokens == estimated
            assert event.estimate.cost_micros  # the estimate was priced
            assert event.to_dict()["estimate"]["input_tokens"] == estimated
        assert gov.usage("acme")[0].totals["cost_micros"] == 0

    def test_hard_cap_once_the_limit_is_reached(self, gov: Governor) -> None:
        gov.create_budget(day_budget(limit=100))
        gov.record("r0", ACME, "openai", "gpt-4o", tokens(100))
        decision = gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(1))
        assert decision.reason is Reason.HARD_CAP_EXCEEDED
        assert decision.budgets[0].state is State.EXCEEDED
        assert decision.refusals[0].resets_at == datetime(2026, 11, 24, tzinfo=UTC)

    def test_exact_fit_is_allowed(self, gov: Governor) -> None:
        gov.create_budget(day_budget(limit=100))
        assert gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100)).allowed
        assert not gov.authorize("r2", ACME, "openai", "gpt-4o", tokens(1)).allowed

    def test_retry_is_replayed_not_counted_twice(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        first = gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100))
        again = gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100))
        assert first.allowed and again.allowed and again.replayed
        assert used(gov) == (0, 100)

    def test_same_id_different_payload_conflicts(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100))
        with pytest.raises(ConflictError):
            gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(101))
        assert used(gov) == (0, 100)

    def test_tenants_never_share_budgets(self, gov: Governor) -> None:
        gov.create_budget(day_budget(limit=100))
        gov.record("r0", ACME, "openai", "gpt-4o", tokens(100))
        other = {"tenant": "globex"}
        assert gov.authorize("r1", other, "openai", "gpt-4o", tokens(50)).budgets == ()
        assert gov.status(other) == []

    def test_deployment_wide_budget_per_tenant(self, gov: Governor) -> None:
        gov.create_budget(
            {"id": "each", "meter": "requests", "window": "day", "limit": 1, "per": "tenant"}
        )
        assert gov.authorize("a", {"tenant": "acme"}, "openai", "m").allowed
        assert gov.authorize("b", {"tenant": "globex"}, "openai", "m").allowed
        assert not gov.authorize("c", {"tenant": "acme"}, "openai", "m").allowed


class TestCommit:
    def test_replaces_reservation_and_returns_difference(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100, 400))
        result = gov.commit("r1", tokens(100, 150))
        assert used(gov) == (250, 0)
        assert [a.difference for a in result.adjustments] == [250]
        assert result.overshoot == ()
        assert result.event.status is EventStatus.SUCCESS

    def test_overshoot_is_recorded_and_reported(self, gov: Governor) -> None:
        gov.create_budget(day_budget(limit=100))
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(50))
        result = gov.commit("r1", tokens(80, 70))
        assert used(gov) == (150, 0)
        assert [(a.estimated, a.actual) for a in result.overshoot] == [(50, 150)]
        assert gov.status(ACME)[0].state is State.EXCEEDED

    def test_commit_twice_counts_once(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100))
        first = gov.commit("r1", tokens(90))
        again = gov.commit("r1", tokens(90))
        assert again.replayed and again.event.id == first.event.id
        assert used(gov) == (90, 0)
        with pytest.raises(ConflictError):
            gov.commit("r1", tokens(91))

    def test_error_status_is_an_error_event_that_counts(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100))
        result = gov.commit("r1", tokens(10), status="error", reason="upstream 500")
        assert result.event.status is EventStatus.ERROR
        assert result.event.reason == "upstream 500"
        assert used(gov) == (10, 0)

    def test_unknown_request_without_subject(self, gov: Governor) -> None:
        with pytest.raises(NotFoundError):
            gov.commit("nope", tokens(1))

    def test_unknown_request_with_subject_is_post_hoc(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.commit("p1", tokens(7), subject=ACME, provider="openai", model="gpt-4o")
        assert used(gov) == (7, 0)

    def test_usage_belongs_to_the_authorization_window(self, gov: Governor, clock: Clock) -> None:
        clock.now = datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC)
        gov.create_budget(day_budget())
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100))
        clock.advance(seconds=2)
        gov.commit("r1", tokens(60))
        assert used(gov) == (0, 0)  # the new day is untouched
        event = gov.events()[0]
        assert event.occurred_at == datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC)
        clock.now = datetime(2026, 11, 23, 23, 59, 59, 999999, tzinfo=UTC)
        assert used(gov) == (60, 0)

    def test_commit_with_another_model_charges_that_models_budgets(self, gov: Governor) -> None:
        gov.create_budget(day_budget(id="mini", match={"model": "gpt-4o-mini*"}))
        gov.create_budget(day_budget(id="big", match={"model": "gpt-4o"}))
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100))
        gov.commit("r1", tokens(30), model="gpt-4o-mini-2024-07-18")
        assert used(gov, "big") == (0, 0)
        assert used(gov, "mini") == (30, 0)


class TestRelease:
    def test_release_returns_the_reservation(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100))
        assert gov.release("r1") is ReservationState.RELEASED
        assert gov.release("r1") is ReservationState.RELEASED
        assert used(gov) == (0, 0)
        assert [e.status for e in gov.events()] == [EventStatus.RELEASED]

    def test_release_after_commit_changes_nothing(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100))
        gov.commit("r1", tokens(40))
        assert gov.release("r1") is ReservationState.COMMITTED
        assert used(gov) == (40, 0)

    def test_release_unknown(self, gov: Governor) -> None:
        with pytest.raises(NotFoundError):
            gov.release("nope")

    def test_expired_reservations_release_themselves(self, gov: Governor, clock: Clock) -> None:
        gov.create_budget(day_budget(limit=100))
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100), ttl=30)
        assert not gov.authorize("r2", ACME, "openai", "gpt-4o", tokens(1)).allowed
        clock.advance(seconds=30)
        assert gov.authorize("r3", ACME, "openai", "gpt-4o", tokens(1)).allowed
        released = gov.events(EventQuery(status=EventStatus.RELEASED))
        assert [(e.request_id, e.reason) for e in released] == [("r1", "expired")]

    def test_late_commit_after_expiry_is_still_recorded(self, gov: Governor, clock: Clock) -> None:
        gov.create_budget(day_budget())
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100), ttl=10)
        clock.advance(seconds=11)
        assert gov.sweep() == 1
        result = gov.commit("r1", tokens(70))
        assert result.late
        assert used(gov) == (70, 0)

    def test_late_commit_compares_with_what_was_reserved(self, gov: Governor, clock: Clock) -> None:
        gov.create_budget(day_budget())
        gov.create_budget(day_budget(id="acme-user", per="user"))
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100), ttl=10)
        clock.advance(seconds=11)
        assert gov.sweep() == 1
        result = gov.commit("r1", tokens(70))
        assert sorted(
            (a.budget_id, a.member, a.estimated, a.actual) for a in result.adjustments
        ) == [
            ("acme-day", "", 100, 70),
            ("acme-user", "u1", 100, 70),
        ]

    def test_late_commits_past_a_hard_cap_are_reported(self, gov: Governor, clock: Clock) -> None:
        """Ten reservations expire, ten more are granted in their room, all twenty commit:
        the cap is crossed by the late ten, and each late commit says by how much."""
        gov.create_budget(day_budget(limit=10))
        for i in range(10):
            assert gov.authorize(f"a{i}", ACME, "openai", "gpt-4o", tokens(1), ttl=1).allowed
        clock.advance(seconds=2)
        for i in range(10):
            assert gov.authorize(f"b{i}", ACME, "openai", "gpt-4o", tokens(1), ttl=60).allowed
        late = [gov.commit(f"a{i}", tokens(1)) for i in range(10)]
        on_time = [gov.commit(f"b{i}", tokens(1)) for i in range(10)]
        assert all(r.late for r in late) and not any(r.late for r in on_time)
        reported = [(o.budget_id, o.member, o.amount) for r in late for o in r.late_overshoot]
        assert reported == [("acme-day", "", 1)] * 10
        assert not any(r.late_overshoot for r in on_time)
        (view,) = gov.status(ACME)
        assert (view.used, view.limit, view.overshoot) == (20, 10, 10)
        assert view.to_dict()["overshoot"] == 10

    def test_a_late_commit_within_the_cap_reports_no_overshoot(
        self, gov: Governor, clock: Clock
    ) -> None:
        gov.create_budget(day_budget(limit=100))
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(10), ttl=1)
        clock.advance(seconds=2)
        assert gov.sweep() == 1
        result = gov.commit("r1", tokens(10))
        assert result.late and result.late_overshoot == ()
        assert gov.status(ACME)[0].overshoot == 0


class TestRecord:
    def test_record_is_idempotent(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.record("p1", ACME, "openai", "gpt-4o", tokens(5))
        assert gov.record("p1", ACME, "openai", "gpt-4o", tokens(5)).replayed
        assert used(gov) == (5, 0)
        with pytest.raises(ConflictError):
            gov.record("p1", ACME, "openai", "gpt-4o", tokens(6))

    def test_record_lands_in_the_window_of_occurred_at(self, gov: Governor, clock: Clock) -> None:
        gov.create_budget(day_budget())
        gov.record(
            "p1", ACME, "openai", "gpt-4o", tokens(5), occurred_at=clock.now - timedelta(days=1)
        )
        assert used(gov) == (0, 0)

    def test_record_with_the_id_of_an_authorization_conflicts(self, gov: Governor) -> None:
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(5))
        with pytest.raises(ConflictError):
            gov.record("r1", ACME, "openai", "gpt-4o", tokens(5))


class TestFingerprintsOfEarlierVersions:
    """Fingerprints kept before 0.2 hashed ``repr`` of the payload, not its JSON:
    a retry after an upgrade is still recognised, and a changed payload still refused."""

    @pytest.fixture
    def legacy(self, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
        def old(*parts: object) -> str:
            return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()

        monkeypatch.setattr("allotment.governor.payload_hash", old)
        return monkeypatch.undo

    def test_authorize_commit_and_record(self, gov: Governor, legacy: Callable[[], None]) -> None:
        gov.create_budget(day_budget())
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100))
        gov.authorize("r2", ACME, "openai", "gpt-4o", tokens(100))
        gov.commit("r2", tokens(90))
        gov.record("p1", ACME, "openai", "gpt-4o", tokens(5))
        legacy()  # the upgrade
        assert gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(100)).replayed
        assert gov.commit("r2", tokens(90)).replayed
        assert gov.record("p1", ACME, "openai", "gpt-4o", tokens(5)).replayed
        assert used(gov) == (95, 100)
        with pytest.raises(ConflictError):
            gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(101))
        with pytest.raises(ConflictError):
            gov.commit("r2", tokens(91))
        with pytest.raises(ConflictError):
            gov.record("p1", ACME, "openai", "gpt-4o", tokens(6))


GLOBEX = {"tenant": "globex", "user": "u1", "feature": "chat"}


class TestRequestIdsBelongToTheirTenant:
    """Two tenants may use the same request id: neither sees nor blocks the other's."""

    def test_each_tenant_authorizes_and_commits_its_own(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.create_budget(day_budget(id="globex-day", tenant="globex"))
        assert gov.authorize("job-1", ACME, "openai", "gpt-4o", tokens(100)).allowed
        theirs = gov.authorize("job-1", GLOBEX, "openai", "gpt-4o", tokens(300))
        assert theirs.allowed and not theirs.replayed
        assert gov.commit("job-1", tokens(40), tenant="globex").event.subject.tenant == "globex"
        assert used(gov, "globex-day", GLOBEX) == (40, 0)
        assert used(gov) == (0, 100)  # acme's reservation is untouched
        assert gov.commit("job-1", tokens(60), tenant="acme").event.subject.tenant == "acme"
        assert used(gov) == (60, 0)
        assert gov.commit("job-1", tokens(40), tenant="globex").replayed

    def test_a_commit_without_tenant_must_name_it_when_ids_collide(self, gov: Governor) -> None:
        gov.authorize("job-1", ACME, "openai", "gpt-4o", tokens(100))
        gov.authorize("job-1", GLOBEX, "openai", "gpt-4o", tokens(100))
        with pytest.raises(ValidationError) as raised:
            gov.commit("job-1", tokens(10))
        assert raised.value.field == "tenant"
        with pytest.raises(ValidationError):
            gov.release("job-1")
        assert gov.commit("job-1", tokens(10), subject=GLOBEX).event.subject.tenant == "globex"
        assert gov.release("job-1", tenant="acme") is ReservationState.RELEASED
        with pytest.raises(ValidationError) as mismatch:
            gov.commit("job-1", tokens(10), subject=GLOBEX, tenant="acme")
        assert mismatch.value.field == "subject.tenant"

    def test_a_unique_id_needs_no_tenant(self, gov: Governor) -> None:
        gov.authorize("job-1", ACME, "openai", "gpt-4o", tokens(100))
        assert gov.commit("job-1", tokens(10)).event.subject.tenant == "acme"

    def test_another_tenants_id_is_unknown_to_a_scoped_caller(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.authorize("job-1", ACME, "openai", "gpt-4o", tokens(100))
        with pytest.raises(NotFoundError):
            gov.commit("job-1", tokens(10), tenant="globex")
        with pytest.raises(NotFoundError):
            gov.release("job-1", tenant="globex")
        assert used(gov, subject=ACME) == (0, 100)

    def test_post_hoc_records_of_the_same_id_count_for_each(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.create_budget(day_budget(id="globex-day", tenant="globex"))
        gov.record("job-1", ACME, "openai", "gpt-4o", tokens(5))
        assert not gov.record("job-1", GLOBEX, "openai", "gpt-4o", tokens(7)).replayed
        assert gov.record("job-1", GLOBEX, "openai", "gpt-4o", tokens(7)).replayed
        assert used(gov) == (5, 0)
        assert used(gov, "globex-day", GLOBEX) == (7, 0)
        gov.authorize("job-2", GLOBEX, "openai", "gpt-4o", tokens(1))
        gov.record("job-2", ACME, "openai", "gpt-4o", tokens(5))  # not globex's authorization
        assert used(gov) == (10, 0)

    def test_a_hold_commits_and_releases_its_own_tenants_id(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.authorize("job-1", GLOBEX, "openai", "gpt-4o", tokens(100))
        with gov.hold(ACME, "openai", "gpt-4o", tokens(100), request_id="job-1") as hold:
            hold.commit(tokens(30))
        assert used(gov) == (30, 0)
        with (
            pytest.raises(RuntimeError),
            gov.hold(ACME, "openai", "gpt-4o", tokens(100), request_id="job-2"),
        ):
            gov.authorize("job-2", GLOBEX, "openai", "gpt-4o", tokens(1))
            raise RuntimeError("the provider failed")
        assert used(gov) == (30, 0)  # released, though globex uses job-2 too

    def test_batched_calls_keep_tenants_apart(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        gov.create_budget(day_budget(id="globex-day", tenant="globex"))

        async def both() -> tuple[list[Any], list[Any]]:  # one batch each, where batched
            decisions = await asyncio.gather(
                gov.authorize_async("job-1", ACME, "openai", "gpt-4o", tokens(100)),
                gov.authorize_async("job-1", GLOBEX, "openai", "gpt-4o", tokens(300)),
            )
            results = await asyncio.gather(
                gov.commit_async("job-1", tokens(60), tenant="acme"),
                gov.commit_async("job-1", tokens(40), tenant="globex"),
                gov.commit_async("job-1", tokens(40), subject=GLOBEX),
            )
            return decisions, results

        decisions, results = asyncio.run(both())
        assert all(d.allowed and not d.replayed for d in decisions)
        assert [r.event.subject.tenant for r in results] == ["acme", "globex", "globex"]
        assert [r.replayed for r in results] == [False, False, True]
        assert used(gov) == (60, 0)
        assert used(gov, "globex-day", GLOBEX) == (40, 0)


class TestBudgets:
    def test_crud(self, gov: Governor) -> None:
        created = gov.create_budget(day_budget(limit=1000, soft=[50, 80]))
        assert gov.get_budget("acme-day") == created
        with pytest.raises(ConflictError):
            gov.create_budget(day_budget())
        updated = gov.update_budget("acme-day", limit=2000, mode="warn")
        assert (updated.limit, updated.mode.value) == (2000, "warn")
        assert gov.list_budgets("acme") == [updated]
        assert gov.list_budgets("globex") == []
        gov.delete_budget("acme-day")
        assert gov.list_budgets() == []
        with pytest.raises(NotFoundError):
            gov.delete_budget("acme-day")
        with pytest.raises(NotFoundError):
            gov.update_budget("acme-day", limit=1)

    def test_cost_budget_round_trips_exactly(self, gov: Governor) -> None:
        budget = gov.create_budget(
            {"id": "c", "tenant": "acme", "meter": "cost", "window": "month", "limit": "12.345678"}
        )
        assert budget.limit == 12_345_678
        assert gov.get_budget("c").limit == 12_345_678

    def test_new_budget_counts_usage_already_in_its_window(self, gov: Governor) -> None:
        gov.record("p1", ACME, "openai", "gpt-4o", tokens(40))
        gov.authorize("r1", ACME, "openai", "gpt-4o", tokens(25))
        gov.create_budget(day_budget())
        assert used(gov) == (40, 0)  # a reservation made before the budget existed holds nothing

    def test_changing_the_selector_recounts(self, gov: Governor) -> None:
        gov.create_budget(day_budget(match={"feature": "search"}))
        gov.record("p1", ACME, "openai", "gpt-4o", tokens(40))
        assert gov.status(ACME) == []
        gov.update_budget("acme-day", match={"feature": "chat"})
        assert used(gov) == (40, 0)

    def test_bad_spec_names_the_field_and_writes_nothing(self, gov: Governor) -> None:
        with pytest.raises(ValidationError) as info:
            gov.create_budget(day_budget(window="fortnight"))
        assert info.value.field.startswith("window")
        assert gov.list_budgets() == []


class TestQueries:
    def test_usage_breakdown_by_feature_and_model(self, gov: Governor) -> None:
        gov.record("a", ACME, "openai", "gpt-4o", tokens(10, 5))
        gov.record("b", ACME | {"feature": "search"}, "openai", "gpt-4o", tokens(1, 1))
        gov.record("c", ACME, "anthropic", "claude", tokens(100, 50), status="error")
        gov.record("d", {"tenant": "globex"}, "openai", "gpt-4o", tokens(999))
        rows = {r.group["feature"]: r for r in gov.usage("acme", by=["feature"])}
        assert rows["chat"].calls == 2 and rows["chat"].errors == 1
        assert rows["chat"].totals["input_tokens"] == 110
        assert rows["search"].totals["output_tokens"] == 1
        by_model = {r.group["model"]: r.calls for r in gov.usage("acme", by="model")}
        assert by_model == {"gpt-4o": 2, "claude": 1}

    def test_usage_by_day_and_time_range(self, gov: Governor, clock: Clock) -> None:
        gov.record("a", ACME, "openai", "m", tokens(1), occurred_at=clock.now - timedelta(days=1))
        gov.record("b", ACME, "openai", "m", tokens(2))
        rows = gov.usage("acme", by=["day"])
        assert [(r.group["day"], r.totals["input_tokens"]) for r in rows] == [
            ("2026-11-22", 1),
            ("2026-11-23", 2),
        ]
        today = gov.usage("acme", since=clock.now.replace(hour=0))
        assert today[0].totals["input_tokens"] == 2

    def test_usage_top_n_by_cost(self, gov: Governor) -> None:
        """System 2 shows the top provider keys by cost: order and limit."""
        for i, cost in enumerate(["0.5", "3", "1", "2"]):
            gov.record(f"r{i}", ACME | {"key": f"k{i}"}, "o", "m", {"cost": cost})
        top = gov.usage("acme", by=["key"], order="cost", limit=2)
        assert [(r.group["key"], r.totals["cost_micros"]) for r in top] == [
            ("k1", 3_000_000), ("k3", 2_000_000),
        ]  # fmt: skip
        by_calls = gov.usage("acme", by=["key"], order="calls")
        assert by_calls[0].group["key"] == "k0"  # all tie: group order
        with pytest.raises(ValidationError) as info:
            gov.usage("acme", by=["key"], order="colour")
        assert info.value.field == "order"
        with pytest.raises(ValidationError) as info:
            gov.usage("acme", by=["key"], limit=0)
        assert info.value.field == "limit"

    def test_usage_rejects_unknown_grouping(self, gov: Governor) -> None:
        with pytest.raises(ValidationError) as info:
            gov.usage("acme", by=["colour"])
        assert info.value.field == "by"

    def test_ledger_pages_with_a_cursor(self, gov: Governor) -> None:
        for i in range(5):
            gov.record(f"p{i}", ACME, "openai", "m", tokens(i))
        first = gov.events(EventQuery(tenant="acme", limit=2))
        rest = gov.events(EventQuery(tenant="acme", after_id=first[-1].id or 0))
        assert [e.request_id for e in first + rest] == ["p0", "p1", "p2", "p3", "p4"]

    def test_status_shows_every_applicable_budget(self, gov: Governor) -> None:
        gov.create_budget(day_budget(limit=1000))
        gov.create_budget(day_budget(id="per-user", per="user", limit=100))
        gov.create_budget(day_budget(id="gpt-only", match={"model": "gpt-4o"}, limit=10))
        gov.record("p", ACME, "openai", "gpt-4o", tokens(96))
        views = {v.budget_id: v for v in gov.status(ACME)}
        assert set(views) == {"acme-day", "per-user", "gpt-only"}
        assert views["per-user"].member == "u1"
        assert views["per-user"].state is State.AT_LIMIT
        assert views["acme-day"].percent is not None and str(views["acme-day"].percent) == "9.60"
        assert {v.budget_id for v in gov.status(ACME, "openai", "gpt-4o-mini")} == {
            "acme-day",
            "per-user",
        }


class TestWindows:
    def test_rolling_window_forgets_old_usage(self, gov: Governor, clock: Clock) -> None:
        gov.create_budget(day_budget(window="rolling:60", limit=10))
        gov.record("a", ACME, "openai", "m", tokens(10))
        assert not gov.authorize("r1", ACME, "openai", "m", tokens(1)).allowed
        clock.advance(seconds=62)
        assert gov.authorize("r2", ACME, "openai", "m", tokens(10)).allowed

    def test_period_rolls_over_at_the_exact_instant(self, gov: Governor, clock: Clock) -> None:
        clock.now = datetime(2026, 11, 23, 23, 59, 59, 999999, tzinfo=UTC)
        gov.create_budget(day_budget(limit=10))
        gov.record("a", ACME, "openai", "m", tokens(10))
        assert not gov.authorize("r1", ACME, "openai", "m", tokens(1)).allowed
        clock.advance(microseconds=1)
        assert gov.authorize("r2", ACME, "openai", "m", tokens(10)).allowed

    def test_lifetime_never_resets(self, gov: Governor, clock: Clock) -> None:
        gov.create_budget(day_budget(window="lifetime", limit=10))
        gov.record("a", ACME, "openai", "m", tokens(10))
        clock.advance(days=400)
        decision = gov.authorize("r1", ACME, "openai", "m", tokens(1))
        assert decision.reason is Reason.HARD_CAP_EXCEEDED
        assert decision.refusals[0].resets_at is None


class TestAtomicity:
    def test_a_failure_mid_commit_writes_nothing(
        self, make_governor: Callable[..., Governor]
    ) -> None:
        class Exploding:
            def price(
                self, provider: str, model: str, usage: Usage, at: datetime, tenant: object
            ) -> None:
                raise RuntimeError("pricer down")

        gov = make_governor()
        gov.create_budget(day_budget())
        gov.authorize("r1", ACME, "openai", "m", {"input_tokens": 10, "cost_micros": 1})
        broken = make_governor(pricer=Exploding())
        with pytest.raises(RuntimeError):
            broken.commit("r1", tokens(5))
        assert used(gov) == (0, 10)
        assert gov.events() == []
        gov.commit("r1", tokens(5))
        assert used(gov) == (5, 0)


class TestBatch:
    def test_record_many_is_all_or_nothing(self, gov: Governor) -> None:
        gov.create_budget(day_budget())
        items: list[dict[str, Any]] = [
            {"request_id": f"b{i}", "subject": ACME, "provider": "openai", "model": "m",
             "usage": tokens(i)}
            for i in range(3)
        ]  # fmt: skip
        bad = [*items, {**items[0], "request_id": "x", "usage": {"input_tokens": -1}}]
        with pytest.raises(ValidationError) as info:
            gov.record_many(bad)
        assert info.value.field == "events[3].usage.input_tokens"
        assert gov.events() == []
        results = gov.record_many(items)
        assert [r.event.request_id for r in results] == ["b0", "b1", "b2"]
        assert gov.record_many(items)[0].replayed
        assert used(gov) == (3, 0)


def test_a_sweep_after_many_records_does_not_walk_them(gov: Governor, clock: Clock) -> None:
    """Post-hoc records are never reservations in flight: sweeping must not visit them."""
    gov.record_many(
        {"request_id": f"p{i}", "subject": ACME, "provider": "o", "model": "m", "usage": {}}
        for i in range(2_000)
    )
    clock.advance(days=1)
    assert gov.sweep() == 0
    if hasattr(gov.store, "_state"):
        assert gov.store._state.expiry == []


def test_first_key_only_into_an_empty_key_table(gov: Governor) -> None:
    secret = gov.create_first_key()
    assert secret is not None and gov.authenticate(secret).role.value == "admin"
    assert gov.create_first_key() is None
    assert len(gov.list_keys()) == 1
