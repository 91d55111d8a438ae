"""The CLI run on both sides of ``served`` (``tests/cli/conftest.py``): the file
(``--db``) and the service (``--url``/``--api-key``), which must answer alike."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner, Result

from allotment.cli import app
from tests.e2e.server import ADMIN

runner = CliRunner()
#: (store URL, service base URL)
Served = tuple[str, str]


def local(served: Served, *args: str) -> Result:
    return runner.invoke(app, [*args, "--db", served[0]])


def remote(served: Served, *args: str) -> Result:
    return runner.invoke(app, [*args, "--url", served[1], "--api-key", ADMIN])


def both(served: Served, *args: str) -> tuple[Any, Any]:
    """The JSON answers of ``args`` on the file and through the service."""
    answers = []
    for result in (local(served, *args, "--json"), remote(served, *args, "--json")):
        assert result.exit_code == 0, result.output
        answers.append(json.loads(result.stdout))
    return answers[0], answers[1]
