"""The use-case layer: validation, pricing and the clock around a store.

``Governor`` is the sync library API; ``allotment.async_governor`` has the
same methods as coroutines and runs this very code in a worker thread, so the
two can never disagree.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from allotment._credits import CreditPools, TopUpWorker
from allotment._keys_and_rates import KeysAndRates
from allotment._plans import Plans
from allotment.archive import ArchiveWriter
from allotment.config import load_budget_specs, load_plan_specs, load_rates, parse_plans
from allotment.core import engine
from allotment.core.budgets import Budget, Call, Failure
from allotment.core.decisions import (
    BudgetView,
    Decision,
    Reason,
    Refusal,
    Skipped,
    Uncovered,
    Warning,
)
from allotment.core.fx import FxRate
from allotment.core.keys import ApiKey
from allotment.core.ledger import CommitResult, Event, EventStatus, ReservationState, payload_hash
from allotment.core.plans import Plan
from allotment.core.routes import Route, parse_routes
from allotment.core.subjects import Subject, check_identifier, check_text, parse_subject
from allotment.core.usage import Usage, parse_usage
from allotment.devices import SECRET_NAME, DeviceIds
from allotment.errors import (
    BudgetExceeded,
    StoreError,
    ValidationError,
)
from allotment.lifecycle.authorize import Candidate
from allotment.lifecycle.leases import Heartbeat
from allotment.payments import PaymentGateway
from allotment.pricing.base import Pricer
from allotment.pricing.catalog import CatalogPricer
from allotment.pricing.estimate import EstimateSettings, estimate_request
from allotment.store import Store, open_store
from allotment.store.base import (
    ArchiveStats,
    AuthorizeRequest,
    CommitRequest,
    EventQuery,
    RebuildStats,
    RecordRequest,
    RepriceRequest,
    RepriceStats,
    UsageQuery,
    UsageRow,
)

__all__ = ["Governor", "Hold"]

SubjectLike = Subject | Mapping[str, Any]
UsageLike = Usage | Mapping[str, Any]
_MAX_TTL = 7 * 24 * 3600
#: the decision's flag for a model priced at the fallback (``unknown_model="fallback"``)
_UNKNOWN_MODEL = (Warning(None, Reason.UNKNOWN_MODEL.value, None),)
_NO_WARNINGS: tuple[Warning, ...] = ()
#: degraded grants a Governor remembers for their commits (the oldest go first)
_DEGRADED_KEPT = 10_000


class _Default:
    """Marks an argument left at its default (where None means something else)."""


_DEFAULT = _Default()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Governor(KeysAndRates, CreditPools, Plans):
    """Budgets in front of AI calls, in-process.

    Args:
        store: a ``Store`` or a store URL (``memory://``, ``sqlite:///path.db``).
        pricer: prices usage that arrives without a cost. Default: a
            ``CatalogPricer`` (genai-prices, USD) when ``currency`` is USD;
            pass ``None`` for no pricing.
        currency: the deployment currency of every cost figure.
        unknown_model: ``"fallback"`` prices a model the pricer does not know
            conservatively and flags the event and the decision (an
            ``unknown_model`` warning); ``"deny"`` refuses such authorizations
            with reason ``unknown_model``.
        uncovered: what authorize does with a call no budget applies to:
            ``"warn"`` allows it with a ``no_budget`` warning, ``"allow"``
            allows it quietly, ``"deny"`` refuses it with reason ``no_budget``.
        estimates: how ``authorize(request=...)`` turns a request into an estimate.
        clock: returns the current aware time; tests pass a fake one.
        default_ttl: seconds a reservation lives unless authorize says otherwise.
        gateway: pays credit pools' auto top-ups (``allotment.payments``); without
            one, top-ups that commits start wait, pending, for a governor that has.
        topup_worker: pay top-ups in a background thread as commits start them
            (False: only when ``run_topups`` is called).
        plan_from_subject: take a member's plan from the subject's ``plan`` tag
            (a deployment that trusts its callers); else plans are assigned
            server-side (``assign_plan``) and such a tag is ignored.
    """

    def __init__(
        self,
        store: Store | str = "sqlite:///allotment.db",
        *,
        pricer: Pricer | _Default | None = _DEFAULT,
        currency: str = "USD",
        unknown_model: str = "fallback",
        uncovered: str = "warn",
        estimates: EstimateSettings | None = None,
        clock: Callable[[], datetime] = _utcnow,
        default_ttl: int = 300,
        gateway: PaymentGateway | None = None,
        topup_worker: bool = True,
        plan_from_subject: bool = False,
    ) -> None:
        self.store = open_store(store) if isinstance(store, str) else store
        if isinstance(pricer, _Default):
            pricer = CatalogPricer() if currency == "USD" else None
        self.pricer = pricer
        self.currency = currency
        if unknown_model not in ("deny", "fallback"):
            raise ValidationError("unknown_model", "must be 'deny' or 'fallback'")
        self.unknown_model = unknown_model
        try:
            self.uncovered = Uncovered(uncovered)
        except ValueError:
            raise ValidationError("uncovered", "must be 'allow', 'warn' or 'deny'") from None
        self.estimates = estimates or EstimateSettings()
        self.devices = DeviceIds(lambda: self.store.shared_secret(SECRET_NAME))
        self._keys: dict[str, tuple[ApiKey, datetime]] = {}
        #: calls granted while the store was down, by request id (see ``_degraded``)
        self._degraded_calls: dict[str, Call] = {}
        self.default_ttl = _check_ttl(default_ttl, "default_ttl")
        self._clock = clock
        self.gateway = gateway
        self.plan_from_subject = plan_from_subject
        self._topup_worker = (
            TopUpWorker(self.run_topups) if gateway is not None and topup_worker else None
        )

    def now(self) -> datetime:
        """The governor's clock, checked to be timezone-aware."""
        now = self._clock()
        zone = now.tzinfo
        # UTC is the usual zone, and asking any zone its offset costs a method call.
        if zone is not UTC and (zone is None or now.utcoffset() is None):
            raise ValidationError("clock", "must return a timezone-aware datetime")
        return now

    # the call lifecycle
    def authorize(
        self,
        request_id: str,
        subject: SubjectLike,
        provider: str,
        model: str,
        estimate: UsageLike | None = None,
        *,
        ttl: int | None = None,
        request: Mapping[str, Any] | None = None,
        max_duration: int | None = None,
        routes: Sequence[Mapping[str, Any] | Route] | None = None,
    ) -> Decision:
        """Reserve ``estimate`` on every applicable budget, or refuse.

        Instead of an explicit ``estimate`` you may pass the provider
        ``request`` itself (chat messages, ``max_tokens``): its input tokens are
        counted offline and its output is ``max_tokens`` or a default.

        A ``concurrency`` budget counting the call makes it a lease: it holds a
        slot until committed or released, or until ``ttl`` seconds pass without
        a ``heartbeat``; ``max_duration`` (seconds) caps how long heartbeats
        can keep it. A refusal by a rate or concurrency limit says when to
        retry (``Decision.retry_at``).

        ``routes`` lists where the call may be served, in order:
        ``[{"provider", "model", "backend"?}, ...]``, the first being ``provider``
        and ``model`` themselves. The first candidate whose every applicable
        budget passes is reserved (``Decision.route``); each one passed over is
        in ``Decision.skipped`` with its reasons. A backend is matched by
        budgets as ``match: {backend: ...}`` (a sub-cap).

        Idempotent per ``request_id``: a retry of a granted authorization
        gets the same grant back (``replayed=True``); the same id with a
        different payload raises ``ConflictError``.
        """
        prepared, now = self._authorize_request(
            request_id, subject, provider, model, estimate, ttl, request, max_duration, routes
        )
        try:
            return self.store.authorize(prepared, now)
        except StoreError as exc:
            return self._degraded(prepared, now, exc)

    async def authorize_async(
        self,
        request_id: str,
        subject: SubjectLike,
        provider: str,
        model: str,
        estimate: UsageLike | None = None,
        *,
        ttl: int | None = None,
        request: Mapping[str, Any] | None = None,
        max_duration: int | None = None,
        routes: Sequence[Mapping[str, Any] | Route] | None = None,
    ) -> Decision:
        """``authorize`` for an event loop.

        A store that groups calls into shared transactions (SQLite,
        PostgreSQL) takes the call without a thread per call; any other
        store runs in a worker thread.
        """
        prepared, now = self._authorize_request(
            request_id, subject, provider, model, estimate, ttl, request, max_duration, routes
        )
        submit = getattr(self.store, "authorize_async", None)
        try:
            if submit is None:
                return await asyncio.to_thread(self.store.authorize, prepared, now)
            decision: Decision = await submit(prepared, now)
            return decision
        except StoreError as exc:
            return self._degraded(prepared, now, exc)

    def _authorize_request(
        self,
        request_id: str,
        subject: SubjectLike,
        provider: str,
        model: str,
        estimate: UsageLike | None,
        ttl: int | None,
        request: Mapping[str, Any] | None,
        max_duration: int | None = None,
        routes: Sequence[Mapping[str, Any] | Route] | None = None,
    ) -> tuple[AuthorizeRequest, datetime]:
        """Validate, estimate and price an authorization: everything before the store."""
        now = self.now()
        call = self._call(subject, provider, model)
        candidates = () if routes is None else parse_routes(routes, provider, model)
        if candidates:  # the first candidate is the call itself, its backend in the subject
            call = call._replace(subject=candidates[0].subject(call.subject))
        usage = self._estimate(call, estimate, request)
        ttl_seconds = self.default_ttl if ttl is None else _check_ttl(ttl, "ttl")
        parts: tuple[object, ...] = (
            "authorize",
            call.subject.as_tuple(),
            provider,
            model,
            usage.as_tuple(),
        )
        max_seconds = None if max_duration is None else _check_ttl(max_duration, "max_duration")
        # Named only when given: older fingerprints stay valid.
        if max_seconds is not None:
            parts = (*parts, ("max_duration", max_seconds))
        if candidates:
            parts = (*parts, ("routes", tuple(r.label for r in candidates)))
        digest = payload_hash(*parts)
        priced, price, refusal, warnings = self._priced(call, usage, now)
        prepared = AuthorizeRequest(
            _check_id(request_id),
            call,
            priced,
            ttl_seconds,
            digest,
            price,
            refusal,
            self.currency,
            parts,
            warnings,
            self.uncovered,
            self.plan_from_subject,
            max_seconds,
        )
        if candidates:
            first = Candidate(candidates[0], call, priced, price, refusal, warnings)
            others = []
            for route in candidates[1:]:
                served = Call(route.subject(call.subject), route.provider, route.model)
                usage = self._estimate(served, estimate, request)
                others.append(Candidate(route, served, *self._priced(served, usage, now)))
            prepared.routes = (first, *others)
        return prepared, now

    def _estimate(
        self, call: Call, estimate: UsageLike | None, request: Mapping[str, Any] | None
    ) -> Usage:
        """The estimate given, else the provider ``request``'s, estimated offline."""
        if estimate is None and request is not None:
            return estimate_request(
                request, provider=call.provider or "", model=call.model or "",
                settings=self.estimates,
            )  # fmt: skip
        return parse_usage(estimate, "estimate")

    def _priced(
        self, call: Call, usage: Usage, now: datetime
    ) -> tuple[Usage, dict[str, Any], Refusal | None, tuple[Warning, ...]]:
        """``usage`` priced for ``call``: refused up front, or flagged, when its model has
        no price."""
        priced, price = self._price(call, usage, now)
        refusal, warnings = None, _NO_WARNINGS
        if price.get("unknown_model"):
            if self.unknown_model == "deny":
                refusal = Refusal(None, Reason.UNKNOWN_MODEL, 0, 0, 0, None)
            else:
                warnings = _UNKNOWN_MODEL
        return priced, price, refusal, warnings

    def _degraded(self, prepared: AuthorizeRequest, now: datetime, error: StoreError) -> Decision:
        """The fail-open decision while the store is down, or the store's error.

        The store holds no reservation for a degraded grant, so its commit
        would find nothing to commit: the grant is remembered here (bounded),
        and its answer carries ``commit_with`` for commits that reach another
        process. Either way the commit meters the call post hoc.
        """
        opened = self._fail_open(prepared, now)
        if opened is None:
            raise error
        degraded, call = opened
        remembered = self._degraded_calls
        if len(remembered) >= _DEGRADED_KEPT:
            del remembered[next(iter(remembered))]
        remembered[prepared.request_id] = call
        return degraded

    def commit(
        self,
        request_id: str,
        usage: UsageLike,
        *,
        status: str = "success",
        reason: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        subject: SubjectLike | None = None,
        tenant: str | None = None,
    ) -> CommitResult:
        """Replace the reservation with what the call used (may exceed the estimate).

        A request id that was never authorized is metered post hoc when
        ``subject``, ``provider`` and ``model`` are given. Request ids belong to
        their tenant: with ``tenant`` (the service passes the key's), or with
        ``subject``, only that tenant's reservation is found; without either, an
        id that several tenants use is refused with a ValidationError naming
        ``tenant``.
        """
        prepared = self._commit_request(
            request_id, usage, status, reason, provider, model, subject, tenant
        )
        result = self.store.commit(prepared, self.now())
        self._topups_started(result.topups)
        return result

    async def commit_async(
        self,
        request_id: str,
        usage: UsageLike,
        *,
        status: str = "success",
        reason: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        subject: SubjectLike | None = None,
        tenant: str | None = None,
    ) -> CommitResult:
        """``commit`` for an event loop (see ``authorize_async``)."""
        prepared = self._commit_request(
            request_id, usage, status, reason, provider, model, subject, tenant
        )
        submit = getattr(self.store, "commit_async", None)
        if submit is None:
            result = await asyncio.to_thread(self.store.commit, prepared, self.now())
        else:
            result = await submit(prepared, self.now())
        self._topups_started(result.topups)
        return result

    def _commit_request(
        self,
        request_id: str,
        usage: UsageLike,
        status: str,
        reason: str | None,
        provider: str | None,
        model: str | None,
        subject: SubjectLike | None,
        tenant: str | None,
    ) -> CommitRequest:
        actual = parse_usage(usage)
        outcome = _commit_status(status)
        degraded = self._degraded_calls.get(request_id) if subject is None else None
        if degraded is not None and tenant in (None, degraded.subject.tenant):
            subject, provider, model = degraded.subject, degraded.provider, degraded.model
        parsed = None if subject is None else self._subject(subject)
        if parsed is not None:
            if tenant is not None and parsed.tenant != tenant:
                raise ValidationError("subject.tenant", f"must be {tenant!r}, the caller's tenant")
            tenant = parsed.tenant
        parts = ("commit", actual.as_tuple(), str(outcome), provider, model)
        digest = payload_hash(*parts)
        return CommitRequest(
            _check_id(request_id),
            actual,
            outcome,
            digest,
            self.currency,
            self._price,
            check_text(reason, "reason"),
            _opt_name(provider, "provider"),
            _opt_name(model, "model"),
            parsed,
            tenant,
            parts,
            self.plan_from_subject,
        )

    def release(
        self, request_id: str, reason: str = "released", *, tenant: str | None = None
    ) -> ReservationState:
        """Drop a reservation; a no-op for one already committed or released.

        ``tenant`` says whose request id it is, as for ``commit``.
        """
        request_id = _check_id(request_id)
        return self.store.release(request_id, _reason(reason), self.now(), tenant)

    def heartbeat(
        self, lease_id: str, *, ttl: int | None = None, tenant: str | None = None
    ) -> Heartbeat:
        """Keep a lease alive: extend it to min(now + ttl, its maximum duration).

        ``ttl`` defaults to the lease's own (for a reservation that is no lease, the
        default TTL of authorizations). An expired lease is reclaimed, never
        revived; the answer says ``stop=True`` once the lease has ended
        (maximum duration reached, expired, released or revoked, committed),
        and how the budgets it counts on stand.
        """
        lease_id = _check_id(lease_id)
        ttl_seconds = None if ttl is None else _check_ttl(ttl, "ttl")
        return self.store.heartbeat(lease_id, self.now(), ttl_seconds, tenant, self.default_ttl)

    def record(
        self,
        request_id: str,
        subject: SubjectLike,
        provider: str,
        model: str,
        usage: UsageLike,
        *,
        status: str = "success",
        occurred_at: datetime | None = None,
        reason: str | None = None,
    ) -> CommitResult:
        """Meter a call that was never authorized, in the window of ``occurred_at``."""
        now = self.now()
        request = self._record_request(
            request_id, subject, provider, model, usage, status, occurred_at or now, reason
        )
        result = self.store.record(request, now)
        self._topups_started(result.topups)
        return result

    def record_many(self, events: Iterable[Mapping[str, Any]]) -> list[CommitResult]:
        """Meter a batch of calls in one transaction: all are recorded or none.

        Each item has the keyword arguments of ``record``. A bad item raises
        ``ValidationError`` naming it (``events[3].usage.input_tokens``)
        before anything is written.
        """
        now = self.now()
        requests = []
        for i, item in enumerate(events):
            try:
                fields = dict(item)
                fields.setdefault("occurred_at", now)
                requests.append(self._record_request(**fields))
            except ValidationError as exc:
                raise exc.within(f"events[{i}]") from None
            except TypeError as exc:
                raise ValidationError(f"events[{i}]", str(exc)) from None
        results = self.store.record_many(requests, now)
        self._topups_started(tuple(t for r in results for t in r.topups))
        return results

    def _record_request(
        self,
        request_id: str,
        subject: SubjectLike,
        provider: str,
        model: str,
        usage: UsageLike,
        status: str = "success",
        occurred_at: datetime | None = None,
        reason: str | None = None,
    ) -> RecordRequest:
        call = self._call(subject, provider, model)
        actual = parse_usage(usage)
        outcome = _commit_status(status)
        at = _aware(occurred_at, "occurred_at")
        parts = (
            "record", call.subject.as_tuple(), provider, model, actual.as_tuple(), str(outcome)
        )  # fmt: skip
        return RecordRequest(
            _check_id(request_id), call, actual, outcome, at, payload_hash(*parts), self.currency,
            self._price, check_text(reason, "reason"), parts, self.plan_from_subject,
        )  # fmt: skip

    def hold(
        self,
        subject: SubjectLike,
        provider: str,
        model: str,
        estimate: UsageLike | None = None,
        *,
        request_id: str | None = None,
        ttl: int | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> Hold:
        """Authorize, or raise ``BudgetExceeded``; use as a context manager.

        ``with gov.hold(...) as h: ... h.commit(usage)``. Leaving the block
        without committing (by an exception or otherwise) releases the
        reservation. ``request`` is the provider request to estimate, as for
        ``authorize``.
        """
        request_id = request_id or uuid.uuid4().hex
        decision = self.authorize(
            request_id, subject, provider, model, estimate, ttl=ttl, request=request
        )
        if not decision.allowed:
            raise BudgetExceeded(decision)
        return Hold(self, decision, parse_subject(subject).tenant)

    def sweep(self) -> int:
        """Release expired reservations now (authorize also does this as it goes)."""
        return self.store.sweep(self.now())

    # reading
    def status(
        self, subject: SubjectLike, provider: str | None = None, model: str | None = None
    ) -> list[BudgetView]:
        """Every budget that applies to ``subject``, as it stands now."""
        call = Call(
            self._subject(subject), _opt_name(provider, "provider"), _opt_name(model, "model")
        )
        return self.store.status(call, self.now(), self.plan_from_subject)

    def usage(
        self,
        tenant: str,
        by: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        order: str | None = None,
        limit: int | None = None,
    ) -> list[UsageRow]:
        """Usage totals of ``tenant`` grouped ``by`` dimensions, over whole UTC hours.

        ``order`` sorts biggest first by ``calls``, ``errors``, ``blocked``,
        ``cost``, ``tokens`` or a usage field; ``limit`` keeps the first rows
        (system 2: the top 20 provider keys by cost).
        """
        parse_subject({"tenant": tenant})
        if isinstance(by, str):
            by = (by,)
        return self.store.usage(
            UsageQuery(
                tenant,
                tuple(by),
                None if since is None else _aware(since, "since"),
                None if until is None else _aware(until, "until"),
                order,
                limit,
            )
        )

    def events(self, query: EventQuery | None = None) -> list[Event]:
        """A page of the ledger."""
        return self.store.events(query or EventQuery())

    # budgets
    def create_budget(self, budget: Budget | Mapping[str, Any]) -> Budget:
        """Add a budget; its counters are backfilled from the ledger."""
        parsed = self._convertible(_budget(budget))
        self.store.create_budget(parsed)
        return parsed

    def set_budget(self, budget: Budget | Mapping[str, Any]) -> Budget:
        """Create or replace a budget."""
        parsed = self._convertible(_budget(budget))
        self.store.put_budget(parsed)
        return parsed

    def update_budget(
        self,
        budget_id: str,
        changes: Mapping[str, Any] | None = None,
        /,
        *,
        tenant: str | None = None,
        **fields: Any,
    ) -> Budget:
        """Change fields of a budget given in spec form (human units), as a mapping
        or as keywords. ``tenant`` finds the budget as ``get_budget`` does; a
        budget's id and tenant never change."""
        budget = self.store.find_budget(budget_id, tenant)
        changed = {**(changes or {}), **fields}
        for name in ("id", "tenant"):
            if name in changed and changed[name] != getattr(budget, name):
                raise ValidationError(name, "cannot be changed: create a new budget instead")
        updated = self._convertible(Budget.from_spec({**budget.to_spec(), **changed}))
        self.store.put_budget(updated)
        return updated

    def get_budget(self, budget_id: str, *, tenant: str | None = None) -> Budget:
        """The budget with this id as ``tenant`` sees it (NotFoundError if none).

        Budget ids are scoped by tenant: ``tenant`` finds its own budget, else the
        deployment-wide one of that id. Without ``tenant``: the deployment-wide
        budget, else the only tenant budget with that id; when several tenants
        have one, ValidationError naming ``tenant``.
        """
        return self.store.find_budget(budget_id, tenant)

    def list_budgets(self, tenant: str | None = None) -> list[Budget]:
        """Budgets of ``tenant`` (with ``None``: all budgets)."""
        return self.store.list_budgets(tenant)

    def delete_budget(self, budget_id: str, *, tenant: str | None = None) -> None:
        """Remove a budget and its counters; the ledger keeps every event.

        ``tenant`` finds the budget as ``get_budget`` does. A ``protected``
        budget is refused (ValidationError naming ``protected``) until an
        update sets ``protected`` false.
        """
        self.store.delete_budget(self.store.find_budget(budget_id, tenant))

    def load_budgets(self, path: str | Path) -> list[Budget]:
        """Apply a YAML or TOML file: its ``rates:``, then its ``budgets:``, then its
        ``plans:`` (see ``apply_config``)."""
        return self.apply_config(load_budget_specs(path), load_rates(path), load_plan_specs(path))

    def apply_config(
        self,
        budgets: Sequence[Budget | Mapping[str, Any]],
        rates: Sequence[FxRate | Mapping[str, Any]] = (),
        plans: Sequence[Plan | Mapping[str, Any]] = (),
    ) -> list[Budget]:
        """Set ``rates``, then create or replace ``budgets``, then ``plans``, all or
        nothing, in one transaction; an error names the entry
        (``budgets[1].currency``, ``plans[0].default``). Returns the budgets.
        """
        parsed_rates = [
            r if isinstance(r, FxRate) else FxRate.from_spec(r, f"rates[{i}]")
            for i, r in enumerate(rates)
        ]
        known = {(r.source, r.target) for r in [*self.store.rates(), *parsed_rates]}
        parsed: list[Budget] = []
        seen: set[str] = set()
        for i, spec in enumerate(budgets):
            if not isinstance(spec, Budget | Mapping):
                raise ValidationError(f"budgets[{i}]", "must be a budget object")
            try:
                budget = self._convertible(_budget(spec), known)
                if budget.key in seen:
                    where = "" if budget.tenant is None else f" in tenant {budget.tenant!r}"
                    raise ValidationError("id", f"{budget.id!r} is given twice{where}")
            except ValidationError as exc:
                raise exc.within(f"budgets[{i}]") from None
            seen.add(budget.key)
            parsed.append(budget)
        self.store.put_config(parsed_rates, parsed, parse_plans(plans))
        return parsed

    def reprice(
        self,
        since: datetime,
        until: datetime,
        *,
        model: str | None = None,
        tenant: str | None = None,
    ) -> RepriceStats:
        """Recompute the cost of committed calls in ``[since, until)`` with today's pricer.

        Run it after a price correction (a package upgrade, a new override).
        Each changed event keeps its previous price under ``price["previous"]``;
        counters and usage rollups move by the difference. Costs the caller
        supplied are left alone. ``model`` may be a glob.
        """
        if self.pricer is None:
            raise ValidationError("pricer", "reprice needs a pricer")
        request = RepriceRequest(
            _aware(since, "since"), _aware(until, "until"), self._price, model, tenant
        )
        return self.store.reprice(request, self.now())

    def rebuild(self) -> RebuildStats:
        """Recompute every counter and rollup from the ledger."""
        return self.store.rebuild()

    def archive(self, before: datetime, path: str | Path) -> ArchiveStats:
        """Move every event before ``before`` into a new gzip JSON-lines file at ``path``.

        ``before`` is rounded down to a whole hour (UTC), the rollups' grain.
        Counters keep what the archived events counted (a rebuild starts from
        it), usage breakdowns keep their hourly rollups, and request ids of
        finished calls before the cutoff are forgotten: a retry of one of
        those would count as a new call. Needs SQLite or PostgreSQL.
        """
        if before.tzinfo is None:
            raise ValidationError("before", "must be timezone-aware")
        if before > self.now():
            raise ValidationError("before", "must not be in the future")
        hour = before.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        with ArchiveWriter(path) as sink:
            return self.store.archive(hour, sink)

    def close(self) -> None:
        """Stop the top-up worker; close the store."""
        if self._topup_worker is not None:
            self._topup_worker.close()
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail_open(self, request: AuthorizeRequest, now: datetime) -> tuple[Decision, Call] | None:
        """Allow without the store if every enforced budget that applies fails open: the
        decision and the call it grants.

        Which budgets apply is judged from the budgets this process last
        loaded; with none known the store error stands. With route candidates,
        the first whose budgets all fail open is granted, and each one before it
        is skipped with a ``store_unavailable`` refusal naming its fail-closed
        budgets (or with the refusal it had before the store was asked). With
        no candidate left, the store error stands.
        """
        budgets = self.store.cached_budgets(request.call.subject.tenant)
        if budgets is None:
            return None
        if not request.routes:
            if self._closed(budgets, request.call, request.refusal, now):
                return None
            return self._opened(request, request.call, None, ()), request.call
        asked, skipped = request.routes[0].route, list[Skipped]()
        for candidate in request.routes:
            refusals = self._closed(budgets, candidate.call, candidate.refusal, now)
            if refusals:
                skipped.append(Skipped(candidate.route, refusals))
                continue
            # Served by this route: its subject keeps the route asked for, if another.
            subject = candidate.route.subject(candidate.call.subject, asked)
            call = candidate.call._replace(subject=subject)
            return self._opened(request, call, candidate.route, tuple(skipped)), call
        return None

    def _closed(
        self, budgets: Sequence[Budget], call: Call, refusal: Refusal | None, now: datetime
    ) -> tuple[Refusal, ...]:
        """Why ``call`` cannot be granted without the store: its ``refusal`` from before
        the store was asked, or its enforced fail-closed budgets (none: it can)."""
        if refusal is not None:
            return (refusal,)
        applied = engine.resolve(budgets, call, now)
        if not applied and self.uncovered is Uncovered.DENY:
            return (Refusal(None, Reason.NO_BUDGET, 0, 0, 0, None),)
        return tuple(
            Refusal(a.budget.id, Reason.STORE_UNAVAILABLE, 0, 0, 0, None)
            for a in applied
            if a.budget.enforced and a.budget.failure is Failure.CLOSED
        )

    @staticmethod
    def _opened(
        request: AuthorizeRequest, call: Call, route: Route | None, skipped: tuple[Skipped, ...]
    ) -> Decision:
        """The degraded grant of ``call``, with what a commit reaching another process
        needs to meter it (``commit_with``)."""
        commit_with = {"subject": call.subject.to_dict(), "provider": call.provider,
                       "model": call.model}  # fmt: skip
        return Decision(request.request_id, True, (), degraded=True, commit_with=commit_with,
                        route=route, skipped=skipped)  # fmt: skip

    def _subject(self, subject: SubjectLike) -> Subject:
        """``subject`` parsed, its device id hidden (see ``allotment.devices``)."""
        return self.devices.subject(parse_subject(subject))

    def _call(self, subject: SubjectLike, provider: str, model: str) -> Call:
        return Call(self._subject(subject), _name(provider, "provider"), _name(model, "model"))

    def _convertible(self, budget: Budget, known: set[tuple[str, str]] | None = None) -> Budget:
        """``budget`` as stored: device ids hidden, its currency convertible.

        ``known`` are the currency pairs with a rate (default: the stored ones).
        """
        budget = self.devices.budget(budget)
        currency, ours = budget.currency, self.currency
        if currency is not None and currency != ours:
            if known is None:
                known = {(r.source, r.target) for r in self.store.rates()}
            if (ours, currency) not in known and (currency, ours) not in known:
                raise ValidationError(
                    "currency",
                    f"no exchange rate between {ours} and {currency}: add one under rates: "
                    f'in the file ({{source: {ours}, target: {currency}, rate: "0.92", '
                    'effective_from: "2026-01-01T00:00:00Z"}), with gov.set_rate(...) or '
                    "with allotment rates set",
                )
        return budget

    def _price(self, call: Call, usage: Usage, at: datetime) -> tuple[Usage, dict[str, Any]]:
        if usage.cost_micros is not None:
            return usage, {"source": "caller", "currency": self.currency}
        if self.pricer is not None and call.provider and call.model:
            price = self.pricer.price(call.provider, call.model, usage, at, call.subject.tenant)
            if price is not None:
                if price.currency != self.currency:
                    raise ValidationError(
                        "currency",
                        f"pricer returned {price.currency}, deployment uses {self.currency}",
                    )
                return usage.with_cost(price.amount_micros), price.to_dict()
        return usage, {"source": "missing"}


class Hold:
    """A granted authorization to use inside a ``with`` block.

    ``governor`` is anything with the Governor's ``commit`` and ``release``:
    the Governor itself, or ``allotment.client.Client``.
    """

    def __init__(self, governor: Any, decision: Any, tenant: str | None = None) -> None:
        self.governor = governor
        self.decision: Decision = decision
        self.request_id: str = decision.request_id
        #: whose request id it is: another tenant may use the same one
        self.tenant = tenant
        self.result: Any = None

    def commit(self, usage: UsageLike, **kwargs: Any) -> Any:
        """Commit the call's actual usage."""
        if self.tenant is not None and "subject" not in kwargs:
            kwargs.setdefault("tenant", self.tenant)
        self.result = self.governor.commit(self.request_id, usage, **kwargs)
        return self.result

    def release(self, reason: str = "released") -> None:
        """Give the reservation back without using it."""
        self.governor.release(self.request_id, reason, tenant=self.tenant)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.result is None:
            self.release("exception" if exc_type is not None else "not_committed")


def _name(value: object, field: str) -> str:
    checked = check_identifier(value, field, required=True)
    assert checked is not None  # required
    return checked


def _opt_name(value: object, field: str) -> str | None:
    return None if value is None else _name(value, field)


def _reason(reason: object) -> str:
    checked = check_text(reason, "reason")
    if checked is None:
        raise ValidationError("reason", "must be a string")
    return checked


def _check_id(request_id: object) -> str:
    return _name(request_id, "request_id")


def _check_ttl(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_TTL:
        raise ValidationError(field, f"must be an integer number of seconds in [1, {_MAX_TTL}]")
    return value


def _aware(value: object, field: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "must be a timezone-aware datetime")
    return value


def _commit_status(status: object) -> EventStatus:
    if status not in ("success", "error"):
        raise ValidationError("status", "must be 'success' or 'error'")
    return _COMMIT_STATUS[status]


_COMMIT_STATUS = {"success": EventStatus.SUCCESS, "error": EventStatus.ERROR}


def _budget(budget: Budget | Mapping[str, Any]) -> Budget:
    return budget if isinstance(budget, Budget) else Budget.from_spec(budget)
