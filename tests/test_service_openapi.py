"""openapi/openapi.json must match the app (regenerate: python -m app.service.openapi)."""

from __future__ import annotations

import json

from app.service.openapi import DEFAULT_PATH, openapi_document, render


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
