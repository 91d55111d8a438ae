"""The TypeScript (fetch) and Go (net/http) examples, compiled and run against a real server."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.server import serve, service_key

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def toolchain(name: str) -> str:
    """The tool's path; missing is a failure in CI, a skip on a developer machine."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs it")
        pytest.skip(f"{name} is not installed here")
    return path


def run_example(command: list[str], cwd: Path, tmp_path: Path, **extra: str) -> list[str]:
    """Run the example twice against 600 tokens: the first call (512 estimated, 148 used)
    fits, the second (148 + 512 > 600) cannot."""
    outputs = []
    with serve(f"sqlite:///{tmp_path / 'ex.db'}") as base:
        budget = {"id": "d", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 600}
        key = service_key(base, "acme", budget)
        env = os.environ | extra | {"ALLOTMENT_URL": base, "ALLOTMENT_KEY": key}
        for _ in range(2):
            done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=180, check=True)  # fmt: skip
            outputs.append(done.stdout.strip())
    return outputs


def test_typescript_example(tmp_path: Path) -> None:
    npm, node = toolchain("npm"), toolchain("node")
    where = EXAMPLES / "typescript"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=where, check=True,
                   timeout=300)  # fmt: skip
    subprocess.run([node, "node_modules/typescript/bin/tsc", "-p", "."], cwd=where, check=True,
                   timeout=120)  # fmt: skip
    first, second = run_example([node, "dist/authorize.js"], where, tmp_path)
    assert first.startswith("allowed and committed: cost ")
    assert second.startswith("refused: estimate_exceeds_remaining")


def test_go_example(tmp_path: Path) -> None:
    go = toolchain("go")
    where = EXAMPLES / "go"
    cache = os.environ.get("GOCACHE") or str(Path.home() / ".cache" / "go-build")
    first, second = run_example([go, "run", "main.go"], where, tmp_path, GOCACHE=cache)
    assert first.startswith("allowed and committed: cost ")
    assert second.startswith("refused: estimate_exceeds_remaining")
