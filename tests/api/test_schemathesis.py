"""A bounded Schemathesis run over /openapi.json: no 5xx, no response outside the schema."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from allotment.api import create_app
from allotment.governor import Governor

governor = Governor("memory://")
governor.create_budget(
    {"id": "day", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 1000}
)
_, ADMIN = governor.create_key("admin")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(governor))


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {ADMIN}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
