"""What a library user installs and imports: typed, licensed, no server unless asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import allotment

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_SERVER = """
import sys
for name in ("fastapi", "starlette", "uvicorn", "prometheus_client"):
    sys.modules[name] = None  # import fails as if the extra were not installed
import allotment
from allotment.client import Client
gov = allotment.Governor("memory://")
assert gov.authorize("r", {"tenant": "t"}, "openai", "gpt-4o", {"input_tokens": 1}).allowed
from allotment.cli import app
from typer.testing import CliRunner
result = CliRunner().invoke(app, ["serve"])
assert result.exit_code != 0 and "allotment[server]" in result.output, result.output
print("ok")
"""


def test_the_package_is_typed_and_licensed() -> None:
    assert (Path(allotment.__file__).parent / "py.typed").is_file()
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_the_library_and_cli_work_without_the_server_extra() -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_SERVER], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


WITHOUT_FCNTL = """
import sys
sys.modules["fcntl"] = None  # as on Windows
import allotment
gov = allotment.Governor("sqlite:///" + sys.argv[1])
assert gov.authorize("r", {"tenant": "t"}, "openai", "gpt-4o", {"input_tokens": 1}).allowed
print("ok")
"""


def test_import_allotment_works_without_fcntl(tmp_path: Path) -> None:
    """`import allotment` failed on Windows: fcntl was imported unconditionally."""
    db = str(tmp_path / "w.db")
    done = subprocess.run([sys.executable, "-c", WITHOUT_FCNTL, db], capture_output=True,
                          text=True)  # fmt: skip
    assert done.stdout.strip() == "ok", done.stderr
