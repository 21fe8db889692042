"""openapi/openapi.json must match the app (regenerate: python -m app.service.openapi)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from service_support import client_for, fast_settings, perf_case, wait_for_plan

from app.engine.api import demo_scenario_document
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


def documented_schema(doc: dict[str, Any], method: str, path: str, status: str) -> Any:
    """The JSON Schema the document gives an answer, with the components its
    references point into."""
    content = doc["paths"][path][method]["responses"][status]["content"]
    schema = content["application/json"]["schema"]
    assert schema, f"{method.upper()} {path} {status}: an empty schema documents nothing"
    return Draft202012Validator({**schema, "components": doc["components"]})


def test_documented_schemas_describe_real_answers(tmp_path: Path) -> None:
    """These three answers were documented as `{}`: their models' schemas must
    accept what the service sends and refuse it without a required field."""
    doc = openapi_document()
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        empty = c.get("/v1/calibration")
        observation = perf_case(
            model="Qwen2.5-7B",
            input_tokens=1024,
            output_tokens=256,
            concurrency=8,
            ttft_s=0.21,
            tpot_s=0.013,
        )
        accepted = c.post("/v1/observations/latency", json={"observations": [observation]})
        answers = [
            ("get", "/v1/calibration", empty, "in_force"),
            ("post", "/v1/observations/latency", accepted, "generation"),
            ("get", "/v1/calibration", c.get("/v1/calibration"), "in_force"),
            ("get", "/v1/plan/explain", c.get("/v1/plan/explain"), "query_types"),
        ]
    for method, path, r, required in answers:
        assert r.status_code in (200, 202), r.text
        validator = documented_schema(doc, method, path, str(r.status_code))
        body = r.json()
        validator.validate(body)
        assert not validator.is_valid({k: v for k, v in body.items() if k != required})
    assert empty.json()["in_force"] is None
    assert answers[2][2].json()["in_force"]["groups"]  # the nested models were exercised
    explanation = answers[3][2].json()
    validator = documented_schema(doc, "get", "/v1/plan/explain", "200")
    assert not validator.is_valid({**explanation, "query_types": [{"routes": 1}]})


def test_every_post_takes_an_idempotency_key_and_documents_its_answers() -> None:
    """A retry while the first request with the key runs is a 409 (README): it was
    documented nowhere, nor was the header."""
    doc = openapi_document()
    posts = [op for item in doc["paths"].values() for m, op in item.items() if m == "post"]
    assert posts
    for op in posts:
        assert "Idempotency-Key" in [p["name"] for p in op["parameters"]]
        for status in ("400", "409", "422"):
            assert "application/problem+json" in op["responses"][status]["content"]


def _properties(doc: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The documented property names of an object schema (following one $ref)."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return set(schema.get("properties", {}))


def test_solve_and_plan_answers_document_every_field(tmp_path: Path) -> None:
    """POST /v1/solve returned eight solver fields its schema did not name
    (bound_source, candidates, iterations, seed, starts, time_budget_s,
    time_to_best_s, warm_start_used), and a live plan's `analysis.demand` was not
    described either."""
    doc = openapi_document()
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        body = {"scenario": demo_scenario_document(), "algorithm": "agh", "time_budget_s": 0.3}
        solved = c.post("/v1/solve", json=body)
        assert solved.status_code == 200, solved.text
        window = {"query_type": "code", "start": "2026-12-01T10:00:00Z", "window_s": 60,
                  "requests": 1200}  # fmt: skip
        r = c.post("/v1/observations/demand", json={"observations": [window]})
        assert r.status_code == 202, r.text
        live = c.get("/v1/plan", params={"wait_for_generation": r.json()["generation"]}).json()
    schema = doc["paths"]["/v1/solve"]["post"]["responses"]["200"]["content"]
    solve_props = _properties(doc, schema["application/json"]["schema"])
    assert set(solved.json()) <= solve_props, set(solved.json()) - solve_props
    analysis = doc["components"]["schemas"]["Analysis"]
    assert "demand" in analysis["properties"] and live["analysis"]["demand"]
    demand_props = _properties(doc, {"$ref": "#/components/schemas/DemandInfo"})
    assert set(live["analysis"]["demand"][0]) <= demand_props
    solver_props = _properties(doc, {"$ref": "#/components/schemas/SolverInfo"})
    assert set(live["solver"]) <= solver_props, set(live["solver"]) - solver_props
