"""API tests through the real app (lifespan, reconciler, solver process, SQLite)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from service_support import client_for, fast_settings, perf_case, wait_for_plan
from starlette.types import Message, Receive, Scope, Send

from app.engine.api import demo_scenario_document
from app.service.idempotency import IdempotencyMiddleware
from app.service.openapi import openapi_document
from app.service.store import Store

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = fast_settings(tmp_path_factory.mktemp("api"), max_perf_cases=8)
    with client_for(settings) as c:
        wait_for_plan(c, 1)
        yield c


def assert_problem(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail", "errors"} <= body.keys()
    assert body["status"] == status
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def generation(client: TestClient) -> int:
    return int(client.get("/v1/cluster").json()["generation"])


# ---------------------------------------------------------------- cluster ----


def test_get_cluster_has_spec_generation_and_etag(client: TestClient) -> None:
    r = client.get("/v1/cluster")
    assert r.status_code == 200
    body = r.json()
    assert body["generation"] >= 1
    assert {"query_types", "models", "gpus", "precisions", "policy"} <= body["spec"].keys()
    etag = r.headers["etag"]
    assert client.get("/v1/cluster", headers={"If-None-Match": etag}).status_code == 304


def test_put_cluster_replaces_spec_and_if_match(client: TestClient) -> None:
    cur = client.get("/v1/cluster")
    spec = cur.json()["spec"]
    spec["policy"]["max_utilization"] = 0.75
    stale = '"g0-0000"'
    problem = assert_problem(
        client.put("/v1/cluster", json={"spec": spec}, headers={"If-Match": stale}), 412, "If-Match"
    )
    etag = cur.headers["etag"]
    assert problem["errors"][0]["message"] == f"does not match the current ETag {etag}"
    r = client.put("/v1/cluster", json={"spec": spec}, headers={"If-Match": cur.headers["etag"]})
    assert r.status_code == 200, r.text
    assert r.json()["generation"] == cur.json()["generation"] + 1
    assert r.json()["spec"]["policy"]["max_utilization"] == 0.75
    assert r.headers["etag"] != cur.headers["etag"]
    # The same spec again is not a change: the generation stays.
    again = client.put("/v1/cluster", json={"spec": spec})
    assert again.json()["generation"] == r.json()["generation"]


def test_put_cluster_invalid_spec_names_field_and_changes_nothing(client: TestClient) -> None:
    before = client.get("/v1/cluster").json()
    spec = json.loads(json.dumps(before["spec"]))
    spec["query_types"][1]["ttft_s"] = -1
    assert_problem(
        client.put("/v1/cluster", json={"spec": spec}), 422, "spec.query_types[1].ttft_s"
    )
    spec = json.loads(json.dumps(before["spec"]))
    spec["gpus"].append(dict(spec["gpus"][0]))
    body = assert_problem(client.put("/v1/cluster", json={"spec": spec}), 422)
    assert body["errors"][0]["field"].startswith("spec.gpus[")
    spec = json.loads(json.dumps(before["spec"]))
    spec["surprise"] = 1
    assert_problem(client.put("/v1/cluster", json={"spec": spec}), 422, "spec.surprise")
    assert client.get("/v1/cluster").json() == before


def test_demand_merge_updates_one_field_and_bumps_generation(client: TestClient) -> None:
    g0 = generation(client)
    r = client.post(
        "/v1/cluster/demand",
        json={"mode": "merge", "query_types": [{"id": "code", "arrival_rate": 33.3}]},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["generation"] == g0 + 1 and body["changed"] is True
    assert r.headers["location"] == body["plan_url"]
    spec = client.get("/v1/cluster").json()["spec"]
    code = next(q for q in spec["query_types"] if q["id"] == "code")
    assert code["arrival_rate"] == 33.3
    assert code["ttft_s"] > 0  # untouched fields kept
    plan = client.get(body["plan_url"]).json()
    assert plan["observed_generation"] >= body["generation"]


def test_demand_merge_add_and_remove(client: TestClient) -> None:
    spec = client.get("/v1/cluster").json()["spec"]
    new = dict(next(q for q in spec["query_types"] if q["id"] == "conversation"), id="chat-2")
    r = client.post("/v1/cluster/demand", json={"mode": "merge", "query_types": [new]})
    assert r.status_code == 202, r.text
    ids = [q["id"] for q in client.get("/v1/cluster").json()["spec"]["query_types"]]
    assert "chat-2" in ids
    r = client.post("/v1/cluster/demand", json={"mode": "merge", "remove": ["chat-2"]})
    assert r.status_code == 202
    ids = [q["id"] for q in client.get("/v1/cluster").json()["spec"]["query_types"]]
    assert "chat-2" not in ids


def test_demand_errors_name_request_fields_and_apply_nothing(client: TestClient) -> None:
    before = client.get("/v1/cluster").json()
    # A new type must be complete: the missing field is named at its request index.
    r = client.post(
        "/v1/cluster/demand",
        json={"mode": "merge", "query_types": [{"id": "code", "arrival_rate": 1}, {"id": "x"}]},
    )
    assert_problem(r, 422, "query_types[1].arrival_rate")
    r = client.post(
        "/v1/cluster/demand",
        json={"mode": "merge", "query_types": [{"id": "code", "arrival_rate": -1}]},
    )
    assert_problem(r, 422, "query_types[0].arrival_rate")
    r = client.post("/v1/cluster/demand", json={"mode": "merge", "remove": ["nope"]})
    assert_problem(r, 422, "remove[0]")
    r = client.post("/v1/cluster/demand", json={"mode": "replace", "query_types": []})
    assert_problem(r, 422, "query_types")
    r = client.post(
        "/v1/cluster/demand",
        json={"mode": "merge", "query_types": [{"id": "a", "arrival_rate": 1}] * 2},
    )
    assert_problem(r, 422, "query_types[1].id")
    assert_problem(client.post("/v1/cluster/demand", json={"mode": "sideways"}), 422, "mode")
    assert client.get("/v1/cluster").json() == before


def test_a_stale_if_match_on_a_post_is_412_naming_if_match(client: TestClient) -> None:
    """412s named no field (`errors: []`); the header is the part of the request at fault."""
    before = generation(client)
    body = {"mode": "merge", "query_types": [{"id": "code", "arrival_rate": 33.0}]}
    r = client.post("/v1/cluster/demand", json=body, headers={"If-Match": '"g1-x"'})
    assert_problem(r, 412, "If-Match")
    assert r.headers["etag"] == client.get("/v1/cluster").headers["etag"]
    assert generation(client) == before


def test_demand_replace(client: TestClient) -> None:
    spec = client.get("/v1/cluster").json()["spec"]
    keep = spec["query_types"][:2]
    r = client.post("/v1/cluster/demand", json={"mode": "replace", "query_types": keep})
    assert r.status_code == 202
    after = client.get("/v1/cluster").json()["spec"]["query_types"]
    assert [q["id"] for q in after] == [q["id"] for q in keep]
    # Restore for the other tests.
    client.post("/v1/cluster/demand", json={"mode": "replace", "query_types": spec["query_types"]})


def test_availability_update_and_unknown_gpu(client: TestClient) -> None:
    g0 = generation(client)
    r = client.post(
        "/v1/cluster/availability",
        json={"available": {"L4": 20}, "price_per_hour": {"L4": 0.55}},
    )
    assert r.status_code == 202, r.text
    assert r.json()["generation"] == g0 + 1
    l4 = next(g for g in client.get("/v1/cluster").json()["spec"]["gpus"] if g["id"] == "L4")
    assert (l4["available"], l4["price_per_hour"]) == (20, 0.55)
    assert_problem(
        client.post("/v1/cluster/availability", json={"available": {"B300": 1}}),
        422,
        "available.B300",
    )
    assert_problem(
        client.post("/v1/cluster/availability", json={"available": {"L4": -2}}),
        422,
        "available.L4",
    )
    assert_problem(client.post("/v1/cluster/availability", json={}), 422)
    assert generation(client) == g0 + 1


# ------------------------------------------------------------------- plan ----


def test_plan_document_status_conditions_and_diff(client: TestClient) -> None:
    g = generation(client)
    body = wait_for_plan(client, g)
    assert body["status"] in ("Ready", "Degraded")
    assert body["generation"] == g
    types = {c["type"]: c for c in body["conditions"]}
    assert types.keys() == {"Ready", "UpToDate", "Degraded"}
    assert types["Ready"]["status"] == "True" and types["UpToDate"]["status"] == "True"
    plan = body["plan"]
    assert {"deployments", "routing", "unmet", "cost", "feasible", "violations"} <= plan.keys()
    assert body["solver"]["algorithm"] == "agh"
    assert "binding_constraints" in body["analysis"]
    assert {"from_version", "actions", "summary"} <= body["diff"].keys()
    r = client.get("/v1/plan")
    assert client.get("/v1/plan", headers={"If-None-Match": r.headers["etag"]}).status_code in (
        200,
        304,
    )


def test_plan_diff_after_scale_up(client: TestClient) -> None:
    g = generation(client)
    wait_for_plan(client, g)
    spec = client.get("/v1/cluster").json()["spec"]
    conv = next(q for q in spec["query_types"] if q["id"] == "conversation")
    r = client.post(
        "/v1/cluster/demand",
        json={
            "mode": "merge",
            "query_types": [{"id": "conversation", "arrival_rate": conv["arrival_rate"] * 3}],
        },
    )
    body = wait_for_plan(client, r.json()["generation"])
    actions = body["diff"]["actions"]
    assert actions, "tripled demand must change the plan"
    ops = [a["op"] for a in actions]
    # Make before break: growth first, shrink last.
    grow = [i for i, o in enumerate(ops) if o in ("create",)]
    shrink = [i for i, o in enumerate(ops) if o == "delete"]
    assert not grow or not shrink or max(grow) < min(shrink)
    assert body["diff"]["summary"]["gpus_added"]


def test_plan_history_pagination_and_versions(client: TestClient) -> None:
    first = client.get("/v1/plan/history", params={"limit": 1})
    assert first.status_code == 200
    page = first.json()
    assert len(page["items"]) == 1
    newest = page["items"][0]["version"]
    seen = [newest]
    url = page["next"]
    while url:
        page = client.get(url).json()
        seen += [i["version"] for i in page["items"]]
        url = page["next"]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    one = client.get(f"/v1/plan/{newest}")
    assert one.status_code == 200
    assert one.json()["version"] == newest and "spec" not in one.json()
    with_spec = client.get(f"/v1/plan/{newest}", params={"include_spec": True}).json()
    assert "query_types" in with_spec["spec"]
    assert_problem(client.get("/v1/plan/999999"), 404)
    assert_problem(client.get("/v1/plan/0"), 422, "version")
    assert_problem(client.get("/v1/plan/abc"), 422, "version")


def test_long_poll_times_out_with_200(client: TestClient) -> None:
    g = generation(client)
    r = client.get("/v1/plan", params={"wait_for_generation": g + 100, "timeout_s": 0.3})
    assert r.status_code == 200
    assert r.json()["observed_generation"] < g + 100
    assert_problem(client.get("/v1/plan", params={"wait_for_generation": -1}), 422)
    for bad in ("nan", "inf"):  # was "less than or equal to 3600" for nan
        r = client.get("/v1/plan", params={"wait_for_generation": g, "timeout_s": bad})
        assert_problem(r, 422, "timeout_s")
        assert "finite" in r.json()["errors"][0]["message"], r.json()


# ------------------------------------------------------------------ solve ----


def test_solve_what_if_gh_and_agh(client: TestClient) -> None:
    scenario = demo_scenario_document()
    r = client.post("/v1/solve", json={"scenario": scenario, "algorithm": "gh"})
    assert r.status_code == 200, r.text
    gh = r.json()
    assert gh["algorithm"] == "gh" and gh["plan"]["feasible"] is True
    assert "analysis" in gh
    r = client.post(
        "/v1/solve",
        json={
            "scenario": scenario,
            "algorithm": "agh",
            "time_budget_s": 0.2,
            "current_plan": gh["plan"],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["objective"] <= gh["objective"] + 1e-6


def test_solve_errors(client: TestClient) -> None:
    scenario = demo_scenario_document()
    assert_problem(
        client.post("/v1/solve", json={"scenario": scenario, "algorithm": "simplex"}),
        422,
        "algorithm",
    )
    assert_problem(
        client.post("/v1/solve", json={"scenario": scenario, "time_budget_s": 10_000}),
        422,
        "time_budget_s",
    )
    bad = json.loads(json.dumps(scenario))
    bad["models"][0]["kv_heads"] = 10_000
    assert_problem(client.post("/v1/solve", json={"scenario": bad}), 422, "scenario.models[0]")
    plan = {
        "deployments": [
            {
                "model": "m",
                "gpu": "g",
                "precision": "bf16",
                "tp": 1,
                "pp": 1,
                "replicas": 1,
                "id": "wrong",
            }
        ]
    }
    assert_problem(
        client.post("/v1/solve", json={"scenario": scenario, "current_plan": plan}),
        422,
        "current_plan.deployments[0].id",
    )


# ------------------------------------------------------------------- perf ----


def test_perf_estimate_catalog_inline_and_impossible(client: TestClient) -> None:
    spec = client.get("/v1/cluster").json()["spec"]
    model = next(m for m in spec["models"] if m["id"] == "Llama-3.1-8B")
    cases = [
        {
            "model": "Llama-3.1-8B",
            "gpu": "H100-SXM",
            "precision": "bf16",
            "input_tokens": 1000,
            "output_tokens": 200,
            "concurrency": 8,
        },
        {
            "model": model,
            "gpu": "H100-SXM",
            "precision": "fp8",
            "tp": 2,
            "input_tokens": 500,
            "output_tokens": 100,
            "concurrency": 1,
        },
        # No fp8 on an A100: impossible, answered per case.
        perf_case("A100-SXM-80GB", precision="fp8"),
        # TP beyond a node.
        perf_case("L4", tp=16),
    ]
    r = client.post("/v1/perf/estimate", json={"cases": cases})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 4
    for p in preds[:2]:
        assert p["error"] is None
        assert p["ttft_s"] > 0 and p["tpot_s"] > 0 and p["max_concurrency"] >= 1
    assert preds[0]["e2e_s"] == pytest.approx(preds[0]["ttft_s"] + 200 * preds[0]["tpot_s"])
    assert preds[2]["error"] and preds[3]["error"]


def test_perf_estimate_input_errors(client: TestClient) -> None:
    case = perf_case()
    assert_problem(
        client.post("/v1/perf/estimate", json={"cases": [case, {**case, "gpu": "TPU"}]}),
        422,
        "cases[1].gpu",
    )
    assert_problem(
        client.post("/v1/perf/estimate", json={"cases": [{**case, "precision": "fp4"}]}),
        422,
        "cases[0].precision",
    )
    assert_problem(
        client.post("/v1/perf/estimate", json={"cases": [{**case, "input_tokens": 0}]}),
        422,
        "cases[0].input_tokens",
    )
    assert_problem(
        client.post("/v1/perf/estimate", json={"cases": [{**case, "model": {"id": "x"}}]}),
        422,
        "cases[0].model.params_b",
    )
    assert_problem(client.post("/v1/perf/estimate", json={"cases": [case] * 9}), 422, "cases")
    assert_problem(client.post("/v1/perf/estimate", json={"cases": []}), 422, "cases")


# ------------------------------------------------- problems, limits, misc ----


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404)
    r = client.delete("/v1/cluster")
    assert_problem(r, 405)
    assert r.headers["allow"] == "GET, HEAD, PUT"  # was empty with FastAPI's nested routers


def test_malformed_json_is_a_problem(client: TestClient) -> None:
    r = client.post(
        "/v1/cluster/demand", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    body = assert_problem(r, 422, "body")
    assert "invalid JSON" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"mode": "merge\xff"}', "not valid UTF-8 (byte 0xff at offset 15)"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
    ],
    ids=["invalid-utf8", "deep-nesting"],
)
def test_undecodable_body_is_a_problem_naming_body(
    client: TestClient, body: bytes, message: str
) -> None:
    """Both were FastAPI's 400 "There was an error parsing the body" (about:blank,
    no field), unlike malformed JSON."""
    before = generation(client)
    r = client.post(
        "/v1/cluster/demand", content=body, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(r, 422, "body")
    assert problem["type"] == "urn:llm-allocator:problem:validation"
    assert problem["errors"] == [{"field": "body", "message": message}]
    assert generation(client) == before


@functools.cache
def _openapi() -> dict[str, Any]:
    return openapi_document()


def _operations_with_a_body() -> list[tuple[str, str]]:
    doc = _openapi()
    return [
        (method, path)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if "requestBody" in op
    ]


@pytest.mark.parametrize(("method", "path"), _operations_with_a_body())
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", None, "application/json; charset=latin-1"],
)
def test_a_json_body_needs_a_json_content_type(
    client: TestClient, method: str, path: str, content_type: str | None
) -> None:
    """A valid JSON body under another media type (or none) was a 422 "Input should
    be a valid dictionary": it is a 415 naming Content-Type, on every operation
    that takes a body, and documented there."""
    before = generation(client)
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"mode": "merge", "query_types": []}).encode()
    r = client.request(method, path, content=body, headers=headers)
    problem = assert_problem(r, 415, "Content-Type")
    assert problem["type"] == "urn:llm-allocator:problem:unsupported-media-type"
    assert generation(client) == before
    assert "415" in _openapi()["paths"][path][method]["responses"]


def test_json_content_type_parameters_and_suffixes(client: TestClient) -> None:
    body = json.dumps({"mode": "merge", "query_types": [{"id": "code", "arrival_rate": 3.5}]})
    for content_type in ("application/json; charset=UTF-8", "application/merge+json"):
        r = client.post("/v1/cluster/demand", content=body, headers={"Content-Type": content_type})
        assert r.status_code == 202, (content_type, r.text)


def test_body_limit(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path, max_body_bytes=4096)) as c:
        big = {"mode": "merge", "query_types": [{"id": "code", "task": "x" * 100}] * 100}
        assert_problem(c.post("/v1/cluster/demand", json=big), 413)

        def chunks() -> Iterator[bytes]:
            yield b'{"mode": "merge", "query_types": ['
            for _ in range(200):
                yield b'{"id": "code", "arrival_rate": 1.0},'
            yield b"]}"

        r = c.post(
            "/v1/cluster/demand", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_problem(r, 413)
        assert c.get("/v1/cluster").json()["generation"] == 1


def test_idempotency_key_replay_and_conflict(client: TestClient) -> None:
    body = {"mode": "merge", "query_types": [{"id": "math", "arrival_rate": 7.25}]}
    key = {"Idempotency-Key": "demand-0001"}
    first = client.post("/v1/cluster/demand", json=body, headers=key)
    assert first.status_code == 202
    client.post(
        "/v1/cluster/demand",
        json={"mode": "merge", "query_types": [{"id": "math", "arrival_rate": 8}]},
    )
    replay = client.post("/v1/cluster/demand", json=body, headers=key)
    assert replay.status_code == 202
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    other = client.post(
        "/v1/cluster/demand",
        json={"mode": "merge", "query_types": [{"id": "math", "arrival_rate": 9}]},
        headers=key,
    )
    assert_problem(other, 422, "Idempotency-Key")
    assert_problem(
        client.post("/v1/cluster/demand", json=body, headers={"Idempotency-Key": "bad key"}),
        400,
        "Idempotency-Key",
    )


def test_a_concurrent_idempotent_retry_is_409_naming_the_key(tmp_path: Path) -> None:
    """While the first request with a key runs, a retry with the key is a 409 (it
    named no field). Through the middleware alone, so that the first request can be
    held in flight without any timing."""
    store = Store(tmp_path / "idempotency.db")
    store.open()
    runtime = SimpleNamespace(
        running=SimpleNamespace(store=store), settings=SimpleNamespace(idempotency_ttl_s=60.0)
    )
    app = SimpleNamespace(state=SimpleNamespace(runtime=runtime))

    async def scenario() -> tuple[list[Message], list[Message]]:
        entered, release = asyncio.Event(), asyncio.Event()

        async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            entered.set()
            await release.wait()
            await JSONResponse({"done": True}, status_code=202)(scope, receive, send)

        middleware = IdempotencyMiddleware(endpoint)

        async def post() -> list[Message]:
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/v1/cluster/demand",
                "headers": [(b"idempotency-key", b"retry-1")],
                "app": app,
            }
            sent: list[Message] = []

            async def receive() -> Message:
                return {"type": "http.request", "body": b"{}", "more_body": False}

            async def send(message: Message) -> None:
                sent.append(message)

            await middleware(scope, receive, send)
            return sent

        first = asyncio.create_task(post())
        await entered.wait()
        retry = await post()
        release.set()
        return await first, retry

    try:
        first, retry = asyncio.run(scenario())
    finally:
        store.close()
    assert first[0]["status"] == 202
    assert retry[0]["status"] == 409
    problem = json.loads(retry[1]["body"])
    assert problem["type"] == "urn:llm-allocator:problem:idempotency-key-in-use"
    assert [e["field"] for e in problem["errors"]] == ["Idempotency-Key"]


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    # a templated route, requested here so that the test does not rely on another's
    assert client.get("/v1/plan/999999").status_code == 404
    text = client.get("/metrics").text
    for name in (
        "llm_allocator_replans_total",
        "llm_allocator_solve_seconds_bucket",
        "llm_allocator_plan_cost_dollars",
        "llm_allocator_plan_unmet_fraction",
        "llm_allocator_generation_lag",
        'llm_allocator_audits{state="running"}',
        'llm_allocator_http_request_duration_seconds_bucket{le="0.005",method="GET",'
        'route="/v1/plan/{version}"',
    ):
        assert name in text, name


def test_head_answers_like_get_without_body(client: TestClient) -> None:
    get = client.get("/v1/cluster")
    head = client.head("/v1/cluster")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == get.headers["etag"]


def test_an_unknown_query_parameter_is_422_naming_it(client: TestClient) -> None:
    """It was ignored: `?version=1` on /v1/plan/explain explained the live plan,
    `?state=running` on /v1/audits listed every audit (found by a new-user pass)."""
    body = assert_problem(client.get("/v1/plan/explain?version=1"), 422, "version")
    assert "this operation takes: none" in body["errors"][0]["message"]
    body = assert_problem(client.get("/v1/audits?state=running"), 422, "state")
    assert "after, limit" in body["errors"][0]["message"]
    assert_problem(client.post("/v1/evaluate?dry_run=1", json={}), 422, "dry_run")
    assert client.get("/v1/plan/history?limit=1").status_code == 200  # declared ones pass
    # probes and the scrape endpoint take whatever load balancers and scrapers send
    assert client.get("/healthz?probe=1").status_code == 200
    assert client.get("/metrics?format=text").status_code == 200
