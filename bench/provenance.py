"""Where a benchmark's figures came from: the commit actually run, whether the tree
had uncommitted changes (and where), the command, the machine and when. Every
study that writes results records this at the time it runs, never a commit typed
in by hand afterwards."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# What the figures depend on: the code and the benchmark scripts.
WATCHED = ("app", "bench", "pyproject.toml")


def git_state(root: Path = ROOT, watched: tuple[str, ...] = WATCHED) -> tuple[str, list[str]]:
    """(short commit of HEAD, paths under `watched` that differ from it)."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", *watched],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", []
    dirty = sorted({line[3:].strip() for line in status.splitlines() if line.strip()})
    return rev, dirty


def git_rev(root: Path = ROOT) -> str:
    """`abc1234` for a clean tree, `abc1234+uncommitted(app/x.py, …)` otherwise."""
    rev, dirty = git_state(root)
    if not dirty:
        return rev
    shown = ", ".join(dirty[:5]) + (f", +{len(dirty) - 5} more" if len(dirty) > 5 else "")
    return f"{rev}+uncommitted({shown})"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"


def provenance(command: str | None = None, root: Path = ROOT) -> dict[str, Any]:
    """The record a results file carries."""
    rev, dirty = git_state(root)
    return {
        "git": git_rev(root),
        "commit": rev,
        "dirty": dirty,
        "command": command or " ".join(["python3", *sys.argv]),
        "machine": machine(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
