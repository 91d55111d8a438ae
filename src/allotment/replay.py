"""Replay: proposed budgets over the ledger, counterfactually, against the current ones.

Every call the ledger counts (``success`` and ``error``) between ``since`` and
``until`` is asked again, in ledger order: authorized at the time it occurred
with what it really used as its estimate, then committed, by a governor on an
in-memory store that holds only the budgets under test. A call they refuse
is not committed, so it counts toward nothing later: a smaller call after it
may fit. The current budgets are replayed the same way over the same calls,
so the two policies compare like for like (what the ledger's calls met when
they ran is another matter: they were all allowed).

Not replayed: credit pools (their grants and top-ups are not in the replay;
they are listed in ``ReplayReport.not_replayed``), plans' templates, and
leases (a replayed call holds its slot only between its authorize and its
commit). Calls the ledger refused or released never ran and are not asked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from allotment.core.budgets import Budget
from allotment.core.ledger import Event
from allotment.errors import ValidationError
from allotment.governor import Governor
from allotment.lifecycle.queries import EventQuery

__all__ = ["ReplayReport", "ReplayRow", "replay"]

_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """One day and tenant: its calls and spend, and what each policy would have refused."""

    day: date
    tenant: str
    calls: int
    spend_micros: int
    current_refused: int
    current_refused_micros: int
    proposed_refused: int
    proposed_refused_micros: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "tenant": self.tenant,
            "calls": self.calls,
            "spend_micros": self.spend_micros,
            "current_refused": self.current_refused,
            "current_refused_micros": self.current_refused_micros,
            "proposed_refused": self.proposed_refused,
            "proposed_refused_micros": self.proposed_refused_micros,
        }


@dataclass(slots=True)
class ReplayReport:
    """Rows by day (in the viewer's time zone) and tenant, oldest first."""

    rows: list[ReplayRow]
    currency: str
    #: the proposed budgets' refusals, by the budget that refused first
    refused_by: Counter[str] = field(default_factory=Counter)
    #: budgets left out of the replay (credit pools), by id
    not_replayed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "rows": [r.to_dict() for r in self.rows],
            "refused_by": dict(self.refused_by),
            "not_replayed": self.not_replayed,
        }


@dataclass(slots=True)
class _Tally:
    calls: int = 0
    spend: int = 0
    refused: list[int] = field(default_factory=lambda: [0, 0])
    refused_micros: list[int] = field(default_factory=lambda: [0, 0])


class _Clock:
    """The replay's time: the event being asked."""

    def __init__(self) -> None:
        self.now = datetime.min.replace(tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def replay(
    gov: Governor,
    proposed: Sequence[Mapping[str, Any]],
    *,
    since: datetime,
    until: datetime,
    tz: tzinfo = UTC,
    tenant: str | None = None,
) -> ReplayReport:
    """Replay ``proposed`` budget specs and ``gov``'s current budgets over its ledger's
    calls in ``[since, until)`` (of ``tenant`` only, if given).

    Raises:
        ValidationError: a proposed budget is invalid (``budgets[i].field``), or
            ``until`` is not after ``since``.
    """
    if until <= since:
        raise ValidationError("until", "must be after since")
    clock = _Clock()
    current = gov.list_budgets(tenant)
    planned = []
    for i, spec in enumerate(proposed):
        try:
            budget = Budget.from_spec(spec)
        except ValidationError as exc:
            raise exc.within(f"budgets[{i}]") from None
        if tenant is None or budget.tenant in (None, tenant):
            planned.append(budget)
    # Credit pools stay out: their grants and top-ups are not in the replay.
    not_replayed = sorted({b.id for b in (*current, *planned) if b.credits})
    policies = [
        _replayer(gov, [b for b in budgets if not b.credits], clock)
        for budgets in (current, planned)
    ]
    tallies: dict[tuple[date, str], _Tally] = {}
    refused_by: Counter[str] = Counter()
    try:
        for event in _calls(gov, since, until, tenant):
            clock.now = event.occurred_at
            tally = tallies.setdefault(
                (event.occurred_at.astimezone(tz).date(), event.subject.tenant), _Tally()
            )
            cost = event.usage.cost_micros or 0
            tally.calls += 1
            tally.spend += cost
            for n, policy in enumerate(policies):
                refusal = _ask(policy, event)
                if refusal is not None:
                    tally.refused[n] += 1
                    tally.refused_micros[n] += cost
                    if n == 1:
                        refused_by[refusal] += 1
    finally:
        for policy in policies:
            policy.close()
    rows = [
        ReplayRow(day, name, t.calls, t.spend, t.refused[0], t.refused_micros[0],
                  t.refused[1], t.refused_micros[1])
        for (day, name), t in sorted(tallies.items())
    ]  # fmt: skip
    return ReplayReport(rows, gov.currency, refused_by, not_replayed)


def _replayer(gov: Governor, budgets: Sequence[Budget], clock: _Clock) -> Governor:
    """A governor on a memory store with ``budgets`` and ``gov``'s exchange rates."""
    replayer = Governor("memory://", pricer=None, currency=gov.currency, uncovered="allow",
                        clock=clock, topup_worker=False)  # fmt: skip
    for rate in gov.rates():
        replayer.store.put_rate(rate)
    for budget in budgets:
        replayer.store.put_budget(budget)
    return replayer


def _calls(gov: Governor, since: datetime, until: datetime, tenant: str | None) -> Iterator[Event]:
    """The ledger's counted calls in ``[since, until)``, in ledger order."""
    after = 0
    while page := gov.events(
        EventQuery(tenant=tenant, since=since, until=until, after_id=after, limit=_PAGE)
    ):
        yield from (e for e in page if e.status.counts)
        after = page[-1].id or 0


def _ask(policy: Governor, event: Event) -> str | None:
    """Authorize and commit ``event``'s call under ``policy``: None, or the id of the
    budget that refused it (``""`` for a refusal no budget made)."""
    request_id = f"replay-{event.id}"
    usage = event.usage.to_dict()
    subject = event.subject.to_dict()
    decision = policy.authorize(request_id, subject, event.provider, event.model, usage)
    if not decision.allowed:
        return decision.refusals[0].budget_id or ""
    policy.commit(request_id, usage, status=event.status.value)
    return None
