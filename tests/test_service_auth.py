"""Bearer-token auth: writes, solves and audits need it; reads stay open."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_support import TOKEN, client_for, fast_settings, perf_case, wait_for_plan

from app.engine.api import demo_scenario_document

GOOD = {"Authorization": f"Bearer {TOKEN}"}
BAD = {"Authorization": "Bearer nope"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with client_for(fast_settings(tmp_path_factory.mktemp("auth"), token=TOKEN)) as c:
        wait_for_plan(c, 1)
        yield c


WRITES = [
    ("put", "/v1/cluster", {"spec": demo_scenario_document()}),
    (
        "post",
        "/v1/cluster/demand",
        {"mode": "merge", "query_types": [{"id": "code", "arrival_rate": 5}]},
    ),
    ("post", "/v1/cluster/availability", {"available": {"L4": 3}}),
    ("post", "/v1/solve", {"scenario": demo_scenario_document(), "algorithm": "gh"}),
    ("post", "/v1/audits", {"time_limit_s": 5}),
    ("get", "/v1/audits", None),
    ("get", "/v1/audits/abc", None),
    ("delete", "/v1/audits/abc", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_protected_endpoints_need_the_token(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    before = client.get("/v1/cluster").json()["generation"]
    for headers in ({}, BAD, {"Authorization": f"Basic {TOKEN}"}):
        kwargs = {"headers": headers} | ({"json": body} if body is not None else {})
        r = client.request(method.upper(), path, **kwargs)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert [e["field"] for e in r.json()["errors"]] == ["Authorization"]
    assert client.get("/v1/cluster").json()["generation"] == before


def test_writes_work_with_the_token(client: TestClient) -> None:
    r = client.post("/v1/cluster/availability", json={"available": {"L4": 3}}, headers=GOOD)
    assert r.status_code == 202
    r = client.post(
        "/v1/solve", json={"scenario": demo_scenario_document(), "algorithm": "gh"}, headers=GOOD
    )
    assert r.status_code == 200
    assert client.get("/v1/audits", headers=GOOD).status_code == 200


@pytest.mark.parametrize(
    "path", ["/v1/cluster", "/v1/plan", "/v1/plan/history", "/v1/plan/1", "/healthz", "/metrics"]
)
def test_reads_are_open(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_perf_estimate_is_open(client: TestClient) -> None:
    r = client.post("/v1/perf/estimate", json={"cases": [perf_case("L4")]})
    assert r.status_code == 200


def test_idempotent_replay_needs_the_same_credentials(client: TestClient) -> None:
    body = {"available": {"L4": 4}}
    key = {"Idempotency-Key": "auth-replay-1"}
    assert client.post("/v1/cluster/availability", json=body, headers=GOOD | key).status_code == 202
    # Without the token the stored response is not replayed: the request is refused.
    assert client.post("/v1/cluster/availability", json=body, headers=key).status_code == 401
