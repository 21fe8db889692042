"""openapi/openapi.json must match the app (regenerate: python -m app.service.openapi)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.service.openapi import DEFAULT_PATH, main, openapi_document, render


def test_committed_openapi_matches_the_app() -> None:
    committed = DEFAULT_PATH.read_text(encoding="utf-8")
    assert committed == render(), (
        "openapi/openapi.json is stale: run `python -m app.service.openapi`"
    )


def test_every_operation_documents_problem_responses_and_v1_prefix() -> None:
    doc = openapi_document()
    assert "Problem" in doc["components"]["schemas"]
    for path in doc["paths"]:
        assert path.startswith("/v1/") or path in ("/healthz", "/readyz", "/metrics")
    assert json.dumps(doc)  # serialisable


def test_the_command_checks_writes_and_helps_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--help` once wrote a file named `--help`: options are options now."""
    monkeypatch.chdir(tmp_path)
    assert main(["--check"]) == 0  # the committed document
    out = tmp_path / "doc.json"
    assert main([str(out), "--check"]) == 1 and not out.exists()
    assert main([str(out)]) == 0 and out.read_text(encoding="utf-8") == render()
    assert main([str(out), "--check"]) == 0
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--check" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]
