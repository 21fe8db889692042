"""The largest spec the service plans (`max_plan_pairs`): query types x candidate
deployments. A 10,000-type spec used to be accepted; each re-plan then spent 29 s
and 6.3 GB on its candidate table, ran into the 31 s hard limit and was retried,
and no plan was ever published. Now such a spec is a 422 naming the field, and nothing of it
is stored."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from service_support import client_for, fast_settings, wait_for_plan
from test_service_api import assert_problem

from app.engine import api
from app.engine.api import demo_scenario_document
from app.engine.plan.candidates import enumerate_candidates


def demo_candidates() -> int:
    return len(enumerate_candidates(api.parse_scenario(demo_scenario_document()))[0])


def with_types(spec: dict[str, Any], n: int) -> dict[str, Any]:
    """`spec` with `n` query types: its own, then copies of the first under new ids."""
    out = copy.deepcopy(spec)
    first = out["query_types"][0]
    while len(out["query_types"]) < n:
        out["query_types"].append({**first, "id": f"extra-{len(out['query_types'])}"})
    return out


def test_planning_pairs_are_types_times_enumerated_candidates() -> None:
    spec = demo_scenario_document()
    c = demo_candidates()
    assert c > 100
    assert api.planning_pairs(api.parse_scenario(spec)) == (c, c * len(spec["query_types"]))
    assert api.planning_pairs(api.parse_scenario(with_types(spec, 10))) == (c, 10 * c)


def test_a_spec_over_the_limit_is_refused_everywhere_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    c = demo_candidates()
    settings = fast_settings(tmp_path, max_plan_pairs=8 * c)  # the demo's 6 types fit
    with client_for(settings) as client:
        wait_for_plan(client, 1)
        before = client.get("/v1/cluster").json()
        spec = before["spec"]
        r = client.put("/v1/cluster", json={"spec": with_types(spec, 9)})
        body = assert_problem(r, 422, "spec.query_types")
        msg = body["errors"][0]["message"]
        assert f"9 query types x {c:,} candidate deployments" in msg
        assert "at most 8 types with this catalog" in msg and "max_plan_pairs" in msg
        extra = with_types(spec, 9)["query_types"][6:]
        r = client.post("/v1/cluster/demand", json={"mode": "merge", "query_types": extra})
        assert_problem(r, 422, "query_types")
        r = client.post("/v1/solve", json={"scenario": with_types(spec, 9), "algorithm": "gh"})
        assert_problem(r, 422, "scenario.query_types")
        assert client.get("/v1/cluster").json() == before
        # at the limit it is planned
        r = client.put("/v1/cluster", json={"spec": with_types(spec, 8)})
        assert r.status_code == 200, r.text
        plan = wait_for_plan(client, r.json()["generation"])
        assert plan["plan"]["feasible"]


@pytest.mark.parametrize("change", ["rate", "grow"])
def test_a_stored_spec_over_a_lowered_limit_may_change_but_not_grow(
    tmp_path: Path, change: str
) -> None:
    """A spec stored before the setting was lowered (or by an earlier version):
    the forecaster's rates and other changes that do not grow it pass; adding a
    type does not."""
    c = demo_candidates()
    with client_for(fast_settings(tmp_path)) as client:
        spec = with_types(client.get("/v1/cluster").json()["spec"], 9)
        assert client.put("/v1/cluster", json={"spec": spec}).status_code == 200
    with client_for(fast_settings(tmp_path, max_plan_pairs=6 * c)) as client:
        gen = client.get("/v1/cluster").json()["generation"]
        if change == "rate":
            qt = {"id": "extra-6", "arrival_rate": 3.5}
            r = client.post("/v1/cluster/demand", json={"mode": "merge", "query_types": [qt]})
            assert r.status_code == 202, r.text
            assert r.json()["generation"] == gen + 1
        else:
            qt = {**spec["query_types"][0], "id": "one-more"}
            r = client.post("/v1/cluster/demand", json={"mode": "merge", "query_types": [qt]})
            assert_problem(r, 422, "query_types")
            assert client.get("/v1/cluster").json()["generation"] == gen
