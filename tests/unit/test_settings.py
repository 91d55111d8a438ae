"""One composition root: the service and every CLI command build the same Governor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allotment.cli import app
from allotment.core.decisions import Uncovered
from allotment.errors import ConfigurationError
from allotment.settings import Settings, build_governor

CONFIG = """
uncovered: deny
pricing:
  overrides:
    - {model: "house-model", provider: self, input: "2.00", output: "8.00"}
budgets:
  - {id: acme-day, tenant: acme, meter: tokens, window: day, limit: 10000000}
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "allotment.yaml"
    path.write_text(CONFIG)
    return str(path)


def test_the_config_file_prices_and_decides(tmp_path: Path, config: str) -> None:
    settings = Settings.from_env({"ALLOTMENT_CONFIG": config}, db=f"sqlite:///{tmp_path}/a.db")
    with build_governor(settings, load_budgets=True) as gov:
        assert [b.id for b in gov.list_budgets()] == ["acme-day"]
        granted = gov.authorize("r1", {"tenant": "acme"}, "self", "house-model",
                                {"input_tokens": 1_000_000})  # fmt: skip
        assert granted.allowed
        assert not gov.authorize("r2", {"tenant": "other"}, "self", "house-model").allowed
        event = gov.commit("r1", {"input_tokens": 1_000_000}).event
        assert (event.price["source"], event.usage.cost_micros) == ("override", 2_000_000)


def test_the_environment_wins_over_the_file(config: str) -> None:
    env = {"ALLOTMENT_CONFIG": config, "ALLOTMENT_UNCOVERED": "allow"}
    settings = Settings.from_env(env, db="memory://")
    assert settings.uncovered is Uncovered.ALLOW
    with build_governor(settings) as gov:
        assert gov.authorize("r", {"tenant": "other"}, "self", "house-model").allowed


@pytest.mark.parametrize(
    ("name", "value"),
    [("ALLOTMENT_UNCOVERED", "maybe"), ("ALLOTMENT_READ_THREADS", "0"),
     ("ALLOTMENT_SWEEP_SECONDS", "soon"), ("ALLOTMENT_TOPUP_GATEWAY", "http://pay.example/x"),
     ("ALLOTMENT_TOPUP_GATEWAY", "test:maybe")],
)  # fmt: skip
def test_bad_settings_name_their_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_cli_commands_price_with_the_deployments_overrides(tmp_path: Path, config: str) -> None:
    """`allotment record` used to ignore the config file's price overrides."""
    db = f"sqlite:///{tmp_path}/cli.db"
    args = ["record", "--tenant", "acme", "--provider", "self", "--model", "house-model",
            "--input", "1000000", "--db", db, "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"ALLOTMENT_CONFIG": config})
    assert result.exit_code == 0, result.output
    assert '"source": "override"' in result.output


def test_prices_show_and_estimate_use_the_overrides(config: str, tmp_path: Path) -> None:
    """`allotment prices show` and `estimate` looked at the bare catalog."""
    env = {"ALLOTMENT_CONFIG": config}
    shown = CliRunner().invoke(app, ["prices", "show", "self/house-model", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["source"] == "override"
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}],
                                   "max_tokens": 1000}))  # fmt: skip
    args = ["prices", "estimate", "--model", "self/house-model", "--file", str(request), "--json"]
    estimated = CliRunner().invoke(app, args, env=env)
    assert estimated.exit_code == 0, estimated.output
    assert json.loads(estimated.stdout)["source"] == "override"


def test_the_topup_gateway_comes_from_the_environment() -> None:
    from allotment.payments import HttpsGateway, TestGateway
    from allotment.settings import build_gateway

    assert build_gateway(Settings.from_env({})) is None
    failing = build_gateway(Settings.from_env({"ALLOTMENT_TOPUP_GATEWAY": "test:failed"}))
    assert isinstance(failing, TestGateway) and failing.outcome == "failed"
    env = {"ALLOTMENT_TOPUP_GATEWAY": "https://pay.example/topups",
           "ALLOTMENT_TOPUP_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}  # fmt: skip
    assert isinstance(build_gateway(Settings.from_env(env)), HttpsGateway)
    with pytest.raises(ConfigurationError, match="ALLOTMENT_TOPUP_SECRET"):
        Settings.from_env({**env, "ALLOTMENT_TOPUP_SECRET": "hunter2"})
