"""GET /v1/plan/explain: why the live plan is what it is."""

from __future__ import annotations

from pathlib import Path

from service_support import client_for, fast_settings, wait_for_plan


def test_explain_live_plan_names_routes_alternatives_and_binding(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path)) as client:
        status = wait_for_plan(client, 1)
        r = client.get("/v1/plan/explain")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["version"] == status["version"]
        plan_types = {q["id"] for q in client.get("/v1/cluster").json()["spec"]["query_types"]}
        explained = {q["query_type"]: q for q in body["query_types"]}
        assert set(explained) == plan_types
        routed = {(r["query_type"], r["deployment"]) for r in status["plan"]["routing"]}
        for qt, q in explained.items():
            # every route of the plan is reported, and only those
            assert {(qt, r["deployment"]) for r in q["routes"]} == {x for x in routed if x[0] == qt}
            assert q["candidates"]["feasible"] <= q["candidates"]["meet_slo"]
            costs = [c["cost_per_request"] for c in q["cheapest_candidates"]]
            assert costs == sorted(costs)


def test_explain_says_why_demand_is_unmet(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path)) as client:
        wait_for_plan(client, 1)
        # Take every GPU away: nothing can be served, every type is unmet.
        gpus = {g["id"]: 0 for g in client.get("/v1/cluster").json()["spec"]["gpus"]}
        r = client.post("/v1/cluster/availability", json={"available": gpus})
        assert r.status_code == 202, r.text
        wait_for_plan(client, r.json()["generation"])
        body = client.get("/v1/plan/explain").json()
        assert not body["feasible"]
        for q in body["query_types"]:
            assert q["unmet_fraction"] > 0.99
            # the one true reason (it said no candidate met the SLOs, and listed
            # every GPU type as "availability binds")
            assert q["unmet_reasons"][0] == "no GPUs are available", q
            assert not any("SLO" in r or "availability binds" in r for r in q["unmet_reasons"])


def test_explain_before_any_plan_is_404(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, time_budget_s=0.2)
    with client_for(settings) as client:
        r = client.get("/v1/plan/explain")
        # The first plan may already be there on a fast machine; both answers are valid,
        # but a 404 must be a problem document.
        if r.status_code == 404:
            assert r.headers["content-type"].startswith("application/problem+json")
        else:
            assert r.status_code == 200
