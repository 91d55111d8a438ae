"""What keeps the suite fast (``tests/conftest.py``) is still in force.

Each of these broke silently otherwise: a new typer or httpx, or a plugin no
longer named in ``addopts``, makes the suite slower or skips tests, and fails
nothing else.
"""

from __future__ import annotations

import gc
import sqlite3
from pathlib import Path

import httpx
import pytest
import typer.testing
from typer.testing import CliRunner

from allotment.cli import app
from tests.conftest import store_url


def test_the_cli_command_tree_is_built_once() -> None:
    runner = CliRunner()
    runner.invoke(app, ["--help"])
    runner.invoke(app, ["--help"])
    built = getattr(typer.testing._get_command, "built", None)
    assert built is not None, "typer.testing._get_command is no longer patched"
    assert built[id(app)][0] is app


def test_plain_http_clients_share_one_ssl_context() -> None:
    from httpx._transports import default

    assert getattr(default.create_ssl_context, "shared", None) is not None
    with httpx.Client() as one, httpx.Client() as two:
        assert one._transport._pool._ssl_context is two._transport._pool._ssl_context  # type: ignore[attr-defined]
    with httpx.Client(verify=False) as unverified, httpx.Client() as verified:
        assert (
            unverified._transport._pool._ssl_context is not verified._transport._pool._ssl_context
        )  # type: ignore[attr-defined]


def test_the_named_plugins_are_loaded(pytestconfig: pytest.Config) -> None:
    for plugin in ("hypothesispytest", "anyio.pytest_plugin", "schemathesis.pytest.plugin"):
        assert pytestconfig.pluginmanager.hasplugin(plugin), plugin


def test_a_sqlite_test_store_starts_migrated(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert {"reservations", "lease_slots"} <= tables


def test_what_imports_and_collection_made_is_frozen() -> None:
    assert gc.get_freeze_count() > 10_000  # 500,000 in a whole run
    assert gc.isenabled() and gc.get_threshold()[0] == 10_000


def test_plugins_are_named_not_autoloaded(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.getoption("disable_plugin_autoload")
