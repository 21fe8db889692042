"""The HTTP metric `llm_allocator_http_request_duration_seconds{method,route,status}`:
`route` is the route template of every answer, including answers given in front
of the router, and `unmatched` only for paths no route has."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from service_support import client_for, fast_settings, wait_for_plan

HTTP = "llm_allocator_http_request_duration_seconds"


def request_counts(text: str) -> dict[tuple[str, str, str], float]:
    """(method, route, status) -> requests, from the /metrics text."""
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == HTTP
        for s in family.samples
        if s.name == HTTP + "_count"
    }


def test_every_answer_is_labelled_with_its_route_template(tmp_path: Path) -> None:
    """HEAD, idempotent replays, the key-reuse 422 (and the 400 of a malformed key,
    the 413 of the body limit) were labelled `unmatched`."""
    demand = "/v1/cluster/demand"
    body = {"mode": "merge", "query_types": [{"id": "code", "arrival_rate": 3.5}]}
    other = {"mode": "merge", "query_types": [{"id": "code", "arrival_rate": 4.5}]}
    key = {"Idempotency-Key": "metrics-1"}
    with client_for(fast_settings(tmp_path, max_body_bytes=4096)) as c:
        wait_for_plan(c, 1)
        assert c.head("/v1/cluster").status_code == 200
        assert c.post(demand, json=body, headers=key).status_code == 202
        replay = c.post(demand, json=body, headers=key)
        assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"
        assert c.post(demand, json=other, headers=key).status_code == 422
        assert c.post(demand, json=body, headers={"Idempotency-Key": "a b"}).status_code == 400
        assert c.post(demand, json={**body, "pad": "x" * 5000}).status_code == 413
        assert c.head("/v1/plan/999999").status_code == 404
        assert c.delete("/v1/cluster").status_code == 405
        assert c.get("/v1/nothing").status_code == 404
        counts = request_counts(c.get("/metrics").text)
    assert counts[("HEAD", "/v1/cluster", "200")] == 1
    assert counts[("POST", demand, "202")] == 2
    assert counts[("POST", demand, "422")] == 1
    assert counts[("POST", demand, "400")] == 1
    assert counts[("POST", demand, "413")] == 1
    assert counts[("HEAD", "/v1/plan/{version}", "404")] == 1
    assert counts[("DELETE", "/v1/cluster", "405")] == 1
    assert [k for k in counts if k[1] == "unmatched"] == [("GET", "unmatched", "404")]
