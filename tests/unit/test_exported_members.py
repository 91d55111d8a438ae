"""The public API is curated: every exported name is meant, documented and importable."""

import allotment

EXPECTED = {
    "AccessDenied", "AllotmentError", "AsyncGovernor", "Budget", "BudgetExceeded", "BudgetView",
    "CommitResult", "ConfigurationError", "ConflictError", "Decision", "Event", "EventStatus",
    "Failure", "Governor", "Hold", "MemoryStore", "Meter", "Mode", "ModelRate", "NotFoundError",
    "Price", "Pricer", "Reason", "Refusal", "ReservationState", "SQLiteStore", "State",
    "StaticPricer", "Store", "StoreError", "Subject", "Usage", "ValidationError", "Warning",
    "Window", "__version__", "open_store", "StreamUsage", "usage_from", "InvalidData",
    "Heartbeat", "Route",
}  # fmt: skip


def test_exported_members() -> None:
    assert set(allotment.__all__) == EXPECTED
    for name in allotment.__all__:
        member = getattr(allotment, name)
        if name != "__version__":
            assert member.__doc__, f"{name} has no docstring"
