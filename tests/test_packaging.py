"""What can be checked of the container setup without a Docker engine, and that the
installed package carries its data (the image installs the wheel, not the tree)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\w+))?", text, flags=re.M | re.I)
    assert len(stages) >= 2, "builder and runtime stages"
    runtime = text.split("FROM", 2)[-1]  # the last stage
    assert "COPY --from=builder" in runtime
    users = re.findall(r"^USER\s+(\S+)", runtime, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*CMD .*healthz", runtime, flags=re.M | re.S)
    assert re.search(r"^EXPOSE\s+8080", runtime, flags=re.M)
    assert re.search(r'^VOLUME\s+\["/data"\]', runtime, flags=re.M)


def test_compose_mounts_a_volume_for_the_database() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = doc["services"]["llm-allocator"]
    assert any(v.endswith(":/data") for v in svc["volumes"])
    assert "allocator-data" in doc["volumes"]
    assert "8080:8080" in svc["ports"]


def test_wheel_contains_the_packaged_data(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in (
        "gpu_catalog.csv",
        "model_catalog.csv",
        "model_error_rates.csv",
        "trace_profiles.json",
        "README.md",
    ):
        assert f"app/data/{f}" in names
    assert "app/service/routers/plan.py" in names
