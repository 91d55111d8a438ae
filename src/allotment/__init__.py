"""allotment: a budget in front of every AI call.

::

    from allotment import Governor

    gov = Governor("sqlite:///allotment.db")
    gov.create_budget({"id": "acme-day", "tenant": "acme", "meter": "tokens",
                       "window": "day", "limit": 100_000})
    with gov.hold({"tenant": "acme", "user": "u1"}, "openai", "gpt-4o-mini",
                  {"output_tokens": 512}) as h:
        ...  # call the provider
        h.commit({"input_tokens": 1200, "output_tokens": 300})
"""

from allotment.async_governor import AsyncGovernor
from allotment.core.budgets import Budget, Failure, Mode
from allotment.core.decisions import BudgetView, Decision, Reason, Refusal, State, Warning
from allotment.core.ledger import CommitResult, Event, EventStatus, ReservationState
from allotment.core.routes import Route
from allotment.core.subjects import Subject
from allotment.core.usage import Meter, Usage
from allotment.core.windows import Window
from allotment.errors import (
    AccessDenied,
    AllotmentError,
    BudgetExceeded,
    ConfigurationError,
    ConflictError,
    InvalidData,
    NotFoundError,
    StoreError,
    ValidationError,
)
from allotment.governor import Governor, Hold
from allotment.lifecycle.leases import Heartbeat
from allotment.pricing import ModelRate, Price, Pricer, StaticPricer
from allotment.providers import StreamUsage, usage_from
from allotment.store import MemoryStore, SQLiteStore, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AllotmentError",
    "AsyncGovernor",
    "Budget",
    "BudgetExceeded",
    "BudgetView",
    "CommitResult",
    "ConfigurationError",
    "ConflictError",
    "Decision",
    "Event",
    "EventStatus",
    "Failure",
    "Governor",
    "Heartbeat",
    "Hold",
    "InvalidData",
    "MemoryStore",
    "Meter",
    "Mode",
    "ModelRate",
    "NotFoundError",
    "Price",
    "Pricer",
    "Reason",
    "Refusal",
    "ReservationState",
    "Route",
    "SQLiteStore",
    "State",
    "StaticPricer",
    "Store",
    "StoreError",
    "StreamUsage",
    "Subject",
    "Usage",
    "ValidationError",
    "Warning",
    "Window",
    "__version__",
    "open_store",
    "usage_from",
]
