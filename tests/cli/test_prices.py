"""``allotment prices`` and the ``pricing:`` config section."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allotment.cli import app
from allotment.config import load_pricing, parse_pricing
from allotment.core.usage import Usage
from allotment.errors import ValidationError
from allotment.governor import Governor

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_show_a_catalog_price() -> None:
    out = run("prices", "show", "openai/gpt-4o-mini-2024-07-18")
    assert "input_mtok" in out and "0.15" in out and "resolved: openai/gpt-4o-mini" in out
    record = json.loads(run("prices", "show", "gpt-4o-mini", "--provider", "openai", "--json"))
    assert (record["source"], record["unit_prices"]["output_mtok"]) == ("catalog", "0.6")


def test_show_a_price_before_a_change() -> None:
    record = json.loads(
        run("prices", "show", "anthropic/claude-sonnet-4-6", "--at", "2026-03-01", "--json")
    )
    assert record["unit_prices"]["input_mtok"] == "3 (+tiers)"


def test_show_an_unknown_model() -> None:
    out = run("prices", "show", "openai/my-finetune")
    assert "source: fallback" in out and "unknown model" in out


def test_estimate_a_request_file(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({
        "model": "gpt-4o-mini", "max_tokens": 1000,
        "messages": [{"role": "user", "content": "Say hello to the world."}],
    }))  # fmt: skip
    record = json.loads(
        run("prices", "estimate", "--model", "openai/gpt-4o-mini", "--file", str(request), "--json")
    )
    assert record["output_tokens"] == 1000 and record["input_tokens"] > 5
    # 1000 output tokens at $0.60 per million dominate: 600 micro-USD plus the input
    assert 600 < record["cost_micros"] < 700


def test_estimate_rejects_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    result = runner.invoke(app, ["prices", "estimate", "--model", "openai/x", "--file", str(bad)])
    assert result.exit_code == 2 and "file" in result.stderr


def test_unknown_lists_fallback_priced_calls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with Governor(url) as gov:
        gov.record("a", {"tenant": "acme"}, "openai", "my-finetune", {"input_tokens": 10})
        gov.record("b", {"tenant": "acme"}, "openai", "gpt-4o-mini", {"input_tokens": 10})
        gov.record("c", {"tenant": "acme"}, "openai", "gpt-4o-mini", {"images": 1})
    rows = json.loads(run("prices", "unknown", "--db", url, "--json"))
    assert [(r["model"], r["why"]) for r in rows] == [
        ("my-finetune", "unknown model"),
        ("gpt-4o-mini", "uncovered: images"),
    ]
    assert "2 call(s) priced by a fallback" in run("prices", "unknown", "--db", url)


def test_pricing_config(tmp_path: Path) -> None:
    config = tmp_path / "allotment.yaml"
    config.write_text(
        "pricing:\n"
        "  unknown_model: deny\n"
        "  fallback: {input: '15', output: '60'}\n"
        "  overrides:\n"
        "    - {model: 'gpt-4o*', provider: openai, input: '0.10', output: '0.40',\n"
        "       effective_from: '2026-11-01T00:00:00Z'}\n"
        "    - {model: llama-3-70b, provider: self, tenant: acme, input: '0.2', output: '0.2'}\n"
    )
    pricing = load_pricing(config)
    assert pricing.unknown_model == "deny"
    million = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    noon = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert pricing.pricer.price("openai", "gpt-4o-mini", million, noon).amount_micros == 500_000
    llama = pricing.pricer.price("self", "llama-3-70b", million, noon, "acme")
    assert (llama.amount_micros, llama.source) == (400_000, "override")
    other = pricing.pricer.price("self", "llama-3-70b", million, noon, "globex")
    assert (other.amount_micros, other.source) == (75_000_000, "fallback")
    gov = Governor("memory://", pricer=pricing.pricer, unknown_model=pricing.unknown_model)
    assert not gov.authorize("r", {"tenant": "globex"}, "self", "llama-3-70b").allowed


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"unknown_model": "maybe"}, "pricing.unknown_model"),
        ({"fallback": {"input": "1"}}, "pricing.fallback.output"),
        ({"fallback": {"input": "-1", "output": "1"}}, "pricing.fallback.input"),
        ({"fallback": {"input": 1.5, "output": "1"}}, "pricing.fallback.input"),
        ({"overrides": [{"input": "1", "output": "1"}]}, "pricing.overrides[0].model"),
        ({"overrides": [{"model": "m", "input": "1", "output": "1", "colour": "x"}]},
         "pricing.overrides[0].colour"),
        ({"overrides": [{"model": "m", "input": "1", "output": "1",
                         "effective_from": "2026-01-01"}]}, "pricing.overrides[0].effective_from"),
    ],
)  # fmt: skip
def test_bad_pricing_config_names_the_field(section: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_pricing(section)
    assert info.value.field == field


def test_no_pricing_section_means_catalog_defaults(tmp_path: Path) -> None:
    config = tmp_path / "a.toml"
    config.write_text('[[budgets]]\nid = "x"\nmeter = "tokens"\nwindow = "day"\n')
    pricing = load_pricing(config)
    assert pricing.unknown_model == "fallback"
    million = Usage(input_tokens=10**6)
    price = pricing.pricer.price("openai", "gpt-4o-mini", million, datetime.now(UTC))
    assert price.amount_micros == int(Decimal("0.15") * 10**6)
