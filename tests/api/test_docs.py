"""The OpenAPI document and the pages that show it: bearer keys, typed bodies, no CDN."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from allotment.api import create_app
from allotment.governor import Governor

#: URLs a page loads: src, href and spec-url attributes, and Swagger UI's ``url:``
_LINKS = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(Governor("memory://")))


@pytest.fixture(scope="module")
def doc(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_load_nothing_from_another_host(client: TestClient, page: str) -> None:
    answer = client.get(page)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//cdn|fonts\.googleapis", answer.text), answer.text
    links = [a or b for a, b in _LINKS.findall(answer.text)]
    assert "/openapi.json" in links and len(links) >= 3
    for link in links:
        assert link.startswith("/") and not link.startswith("//"), link
        fetched = client.get(link)
        assert fetched.status_code == 200, link
        assert len(fetched.content) > 100, link


def test_swagger_ui_never_asks_an_online_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


def test_fastapis_cdn_pages_are_off(client: TestClient) -> None:
    assert client.get("/docs/oauth2-redirect").status_code == 404
    assert "jsdelivr" not in client.get("/docs").text + client.get("/redoc").text


def test_every_v1_operation_takes_a_bearer_key(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    operations = [(path, method, op) for path, ops in doc["paths"].items()
                  for method, op in ops.items()]  # fmt: skip
    v1 = [(path, method, op) for path, method, op in operations if path.startswith("/v1/")]
    assert len(v1) >= 16
    for path, method, op in v1:
        assert op.get("security") == [{"bearer": []}], (method, path)
        assert "401" in op["responses"], (method, path)
    assert all("security" not in op for path, _, op in operations if not path.startswith("/v1/"))


def test_refusals_and_their_retry_are_documented(doc: dict[str, Any]) -> None:
    responses = doc["paths"]["/v1/authorize"]["post"]["responses"]
    refused = responses["402"]["content"]["application/json"]["schema"]
    assert refused == {"$ref": "#/components/schemas/RefusalBody"}
    detail = doc["components"]["schemas"]["RefusalDetail"]["properties"]
    assert {"decision", "remaining", "limit", "unit", "currency", "display"} <= set(detail)
    assert "Retry-After" in responses["429"]["headers"]
    assert "503" in responses and "402" not in doc["paths"]["/v1/commit"]["post"]["responses"]


def test_the_ledger_export_is_documented_as_csv(doc: dict[str, Any]) -> None:
    content = doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/EventPage"}
    assert content["text/csv"]["schema"] == {"type": "string"}


def body(doc: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = doc["components"]["schemas"][name]["properties"]
    return properties


def test_request_bodies_are_typed(doc: dict[str, Any]) -> None:
    authorize = body(doc, "AuthorizeBody")
    subject = authorize["subject"]
    assert subject["required"] == ["tenant"] and "groups" in subject["properties"]
    estimate = authorize["estimate"]["anyOf"][0]["properties"]
    assert {"input_tokens", "output_tokens", "cost", "audio_seconds"} <= set(estimate)
    usage = body(doc, "CommitBody")["usage"]["anyOf"]
    assert "cost_micros" in usage[0]["properties"] and usage[1]["additionalProperties"] is True
    assert body(doc, "EventBody")["subject"]["properties"]["tenant"]["type"] == "string"
    roles = body(doc, "KeyBody")["role"]["enum"]
    assert roles == ["admin", "tenant_admin", "service", "viewer"]
    budgets = doc["paths"]["/v1/budgets"]["post"]["requestBody"]["content"]["application/json"]
    assert {"id", "meter", "window", "limit"} <= set(budgets["schema"]["properties"])
    patch = doc["paths"]["/v1/budgets/{budget_id}"]["patch"]["requestBody"]["content"]
    assert "required" not in patch["application/json"]["schema"]


@pytest.mark.parametrize(
    ("path", "method", "model"),
    [
        ("/v1/prices", "get", "PricesOut"),
        ("/v1/usage", "get", "UsageOut"),
        ("/v1/budgets/{budget_id}", "get", "BudgetOut"),
        ("/v1/budgets/{budget_id}", "patch", "BudgetOut"),
        ("/v1/keys", "get", "KeysOut"),
    ],
)
def test_answers_are_typed(doc: dict[str, Any], path: str, method: str, model: str) -> None:
    ok = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": f"#/components/schemas/{model}"}
    assert doc["components"]["schemas"][model]["properties"]


def test_rows_and_events_are_typed_to_the_field(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    row = schemas["UsageRowOut"]["properties"]
    assert {"group", "cost_micros", "currency", "display", "input_tokens"} <= set(row)
    event = schemas["EventOut"]["properties"]
    assert event["subject"] == {"$ref": "#/components/schemas/SubjectOut"}
    assert event["usage"] == {"$ref": "#/components/schemas/UsageFiguresOut"}
    assert "unit" in schemas["BudgetViewOut"]["properties"]
