"""A real ``allotment serve`` on a SQLite file, for the CLI's remote-mode tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.served import Served
from tests.e2e.server import serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    url = f"sqlite:///{tmp_path_factory.mktemp('served') / 'served.db'}"
    with serve(url, workers=1) as base:
        yield url, base
