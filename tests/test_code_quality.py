"""The code habits, enforced in the test run (so CI enforces them): ruff's lint
rules and formatting, and mypy in strict mode over `app` and `tests` (the
configuration is pyproject.toml's)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    "check",
    [("ruff", "check", "."), ("ruff", "format", "--check", ".")],
    ids=["ruff-check", "ruff-format"],
)
def test_ruff(check: tuple[str, ...]) -> None:
    out = _run(*check)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict() -> None:
    out = _run("mypy")
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
