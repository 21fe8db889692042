"""The control loop's inputs through the real app: demand observations (ordering,
duplicates, bad input stores nothing), the forecaster's dead band, interval and
scale-down stabilization, `GET /v1/forecast`, `POST /v1/evaluate` (against the
CLI's evaluation), latency observations and the calibration in force (dead band,
restart), engines reaching predictions; and a re-plan stopped by a newer
generation."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_support import client_for, fast_settings, perf_case, running, wait_for_plan

from app.cli import main as cli_main
from app.engine.api import demo_scenario_document
from app.engine.contracts import SolverOptions
from app.service import worker
from app.service.worker import SolveJob, solve_job

T0 = 1_764_000_000.0  # a minute boundary (observation time, not the wall clock)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def window(qt: str, minute: int, rate: float, **extra: Any) -> dict[str, Any]:
    return {
        "query_type": qt,
        "start": iso(T0 + 60 * minute),
        "window_s": 60,
        "requests": rate * 60,
        **extra,
    }


def spec_with(**policy: Any) -> dict[str, Any]:
    spec = demo_scenario_document()
    spec["policy"].update(policy)
    return spec


def code_rate(c: TestClient) -> float:
    spec = c.get("/v1/cluster").json()["spec"]
    return float(next(q["arrival_rate"] for q in spec["query_types"] if q["id"] == "code"))


def post(c: TestClient, *windows: dict[str, Any]) -> dict[str, Any]:
    r = c.post("/v1/observations/demand", json={"observations": list(windows)})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def loop_client(tmp_path: Path) -> Any:
    """An app whose policy forecasts with `last` (deterministic: the latest window)."""
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        spec = spec_with(
            forecast="last",
            replan_deadband=0.05,
            replan_interval_s=300,
            scale_down_stabilization_s=600,
        )
        r = c.put("/v1/cluster", json={"spec": spec})
        assert r.status_code == 200, r.text
        yield c


def test_out_of_order_and_duplicate_windows(loop_client: TestClient) -> None:
    c = loop_client
    first = post(c, window("code", 2, 30.0), window("code", 0, 10.0), window("code", 1, 20.0))
    assert first["accepted"] == 3 and first["replaced"] == 0
    assert code_rate(c) == pytest.approx(30.0)  # "last": the newest window by its start
    again = post(c, window("code", 2, 40.0))  # same type and start: replaces
    assert again["replaced"] == 1
    assert code_rate(c) == pytest.approx(40.0)
    report = c.get("/v1/forecast").json()
    code = next(q for q in report["query_types"] if q["query_type"] == "code")
    assert code["source"] == "forecast" and code["last_observation"]["requests"] == 2400
    assert code["forecast"]["method"] == "last"


def test_bad_observations_store_nothing(loop_client: TestClient) -> None:
    c = loop_client
    before = c.get("/v1/cluster").json()["generation"]
    r = c.post(
        "/v1/observations/demand",
        json={"observations": [window("code", 0, 10.0), window("nope", 0, 1.0)]},
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"field": "observations[1].query_type", "message": "unknown query type 'nope'"}
    ]
    bad_time = {**window("code", 0, 1.0), "start": "2026-01-01T00:00:00"}  # no time zone
    r = c.post("/v1/observations/demand", json={"observations": [bad_time]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "observations[0].start"
    r = c.post("/v1/observations/demand", json={"observations": [window("code", 0, -1.0)]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "observations[0].requests"
    assert c.get("/v1/cluster").json()["generation"] == before
    code = next(q for q in c.get("/v1/forecast").json()["query_types"] if q["query_type"] == "code")
    assert code["source"] == "declared" and code["last_observation"] is None
    store = running(c).store
    assert store.demand_since(0.0) == []


def test_dead_band_interval_and_scale_down_stabilization(loop_client: TestClient) -> None:
    c = loop_client
    assert post(c, window("code", 0, 30.0))["changed"]
    g = c.get("/v1/cluster").json()["generation"]
    # inside the 5% dead band, before an interval has passed: no new generation
    assert not post(c, window("code", 1, 31.0))["changed"]
    assert c.get("/v1/cluster").json()["generation"] == g
    # a rise beyond the band is taken at once
    assert post(c, window("code", 2, 60.0))["changed"]
    assert code_rate(c) == pytest.approx(60.0)
    # a dip is not: the highest forecast of the last 600 s (observation time) holds
    for m in range(3, 12):
        post(c, window("code", m, 20.0))
        assert code_rate(c) == pytest.approx(60.0), m
    # once the 60/s forecast (made at minute 3, the end of window 2) is 600 s old
    post(c, window("code", 13, 20.0))
    assert code_rate(c) == pytest.approx(20.0)
    # the plan of the latest generation records planned and observed rates
    body = wait_for_plan(c, c.get("/v1/cluster").json()["generation"])
    demand = {d["query_type"]: d for d in body["analysis"]["demand"]}
    assert demand["code"]["planned_rps"] == pytest.approx(20.0)
    assert demand["code"]["observed_rps"] == pytest.approx(20.0)


def test_an_elapsed_interval_writes_small_moves(loop_client: TestClient) -> None:
    c = loop_client
    post(c, window("code", 0, 30.0))
    g = c.get("/v1/cluster").json()["generation"]
    assert not post(c, window("code", 1, 30.6))["changed"]  # 2%: inside the band
    assert c.get("/v1/cluster").json()["generation"] == g
    # 300 s (observation time) after the last update, the 2% move is written
    assert post(c, window("code", 5, 30.6))["changed"]
    assert code_rate(c) == pytest.approx(30.6)


def test_coverage_counts_windows_above_the_rate_in_force(loop_client: TestClient) -> None:
    c = loop_client
    post(c, window("code", 0, 30.0))  # in force from minute 1 + 180 s = minute 4
    for m in range(1, 9):
        post(c, window("code", m, 31.0 if m % 2 else 29.0))  # inside the band
    code = next(q for q in c.get("/v1/forecast").json()["query_types"] if q["query_type"] == "code")
    cov = code["coverage"]
    # windows 4..8 ran under the 30/s forecast; 5 and 7 (31/s) ran above it
    assert cov["windows"] == 5 and cov["above_planned"] == 2
    assert cov["share_at_or_below"] == pytest.approx(3 / 5)


def test_evaluate_matches_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with client_for(fast_settings(tmp_path)) as c:
        live = wait_for_plan(c, 1)
        spec = c.get("/v1/cluster").json()["spec"]
        r = c.post("/v1/evaluate", json={})
        assert r.status_code == 200, r.text
        api_doc = r.json()
        assert api_doc["plan_version"] == live["version"]
        (tmp_path / "s.json").write_text(json.dumps(spec))
        (tmp_path / "p.json").write_text(json.dumps(live["plan"]))
        assert cli_main(["evaluate", str(tmp_path / "s.json"), str(tmp_path / "p.json")]) == 0
        cli_doc = json.loads(capsys.readouterr().out)
        assert api_doc["objective"] == pytest.approx(cli_doc["objective"])
        assert api_doc["violations"] == cli_doc["violations"]
        # a demand override: the live fleet at twice the code demand
        rate = next(q["arrival_rate"] for q in spec["query_types"] if q["id"] == "code")
        r = c.post("/v1/evaluate", json={"demand": {"code": 2 * rate}})
        busy = r.json()
        assert busy["feasible"] is False
        assert {v["constraint"] for v in busy["violations"]} >= {"capacity"}
        r = c.post("/v1/evaluate", json={"demand": {"nope": 1.0}})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "demand.nope"


# ---------------------------------------------------------------- latency and calibration


# The deployment and request shape the latency observations below measure.
MEASURED = perf_case(model="Qwen2.5-7B", input_tokens=1024, output_tokens=256)


def latency_items(factor: float, n: int = 6) -> list[dict[str, Any]]:
    """Observations of one deployment whose TPOT runs `factor` times the model's."""
    from app.engine.api import PerfCase, catalog_gpu, catalog_model, catalog_precision, estimate

    model, gpu, prec = (
        catalog_model(MEASURED["model"]),
        catalog_gpu(MEASURED["gpu"]),
        catalog_precision(MEASURED["precision"]),
    )
    assert model and gpu and prec
    tokens_in, tokens_out = MEASURED["input_tokens"], MEASURED["output_tokens"]
    out = []
    for k in range(n):
        conc = 1 + k
        p = estimate(PerfCase(model, gpu, prec, 1, 1, tokens_in, tokens_out, conc))
        assert p.ttft_s and p.tpot_s
        out.append(
            {**MEASURED, "concurrency": conc, "ttft_s": p.ttft_s, "tpot_s": p.tpot_s * factor}
        )
    return out


def test_bad_latency_observations_store_nothing(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        items = latency_items(1.0, 2)
        items[1] = {**items[1], "gpu": "TPU-v9"}
        r = c.post("/v1/observations/latency", json={"observations": items})
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "observations[1].gpu"
        items[1] = {**latency_items(1.0, 2)[1], "engine": "nope"}
        r = c.post("/v1/observations/latency", json={"observations": items})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "observations[1].engine"
        assert running(c).store.latency_observations() == []
        assert c.get("/v1/calibration").json()["in_force"] is None


def test_calibration_in_force_moves_only_beyond_the_dead_band_and_survives_restart(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path)
    with client_for(settings) as c:
        wait_for_plan(c, 1)
        g0 = c.get("/v1/cluster").json()["generation"]
        first = c.post("/v1/observations/latency", json={"observations": latency_items(1.3)})
        assert first.status_code == 202 and first.json()["changed"] is True
        assert first.json()["generation"] == g0 + 1  # the next re-plan uses it
        doc = c.get("/v1/calibration").json()
        assert doc["observations"] == 6 and doc["in_force"] is not None
        # the same points again: the fit moves a little (more points), within 5%
        again = c.post("/v1/observations/latency", json={"observations": latency_items(1.3)})
        assert again.json()["changed"] is False and again.json()["generation"] == g0 + 1
        est = c.post(
            "/v1/perf/estimate",
            json={"cases": [{**MEASURED, "concurrency": 4}]},
        ).json()["predictions"][0]
        assert est["calibrated"] is True and est["calibration_points"] >= 6
        in_force = c.get("/v1/calibration").json()["in_force"]
    with client_for(settings) as c:  # a restart refits the same calibration
        assert c.get("/v1/calibration").json()["in_force"] == in_force


def test_engine_selection_reaches_the_predictions(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        case = perf_case(input_tokens=1024, output_tokens=512, concurrency=8)
        cases = [case, {**case, "engine": "trtllm"}, {**case, "engine": "sglang"}]
        out = c.post("/v1/perf/estimate", json={"cases": cases}).json()["predictions"]
        assert [p["engine"] for p in out] == ["vllm", "trtllm", "sglang"]
        assert out[0]["ttft_s"] != out[1]["ttft_s"]
        assert "vllm" in (out[2]["profile_note"] or "").lower()  # no fitted constants of its own
        # the spec's engine is the default for its GPUs
        spec = spec_with(engine="trtllm")
        assert c.put("/v1/cluster", json={"spec": spec}).status_code == 200
        out = c.post("/v1/perf/estimate", json={"cases": [case]}).json()["predictions"]
        assert out[0]["engine"] == "trtllm"


# ---------------------------------------------------------------- stoppable re-plans


def test_a_newer_generation_stops_a_replan() -> None:
    """The reconcile worker sees the newest announced generation: a job for an
    older one stops at once and returns its best plan, marked `stopped`."""
    latest = multiprocessing.get_context("spawn").Value("q", 2, lock=False)
    worker._LATEST = latest
    try:
        job = SolveJob(
            demo_scenario_document(),
            SolverOptions(algorithm="agh", time_budget_s=30.0),
            generation=1,
            explain=False,
        )
        out = solve_job(job)
        assert out.solver["termination"] == "stopped"
        assert out.solver["starts"] <= 2  # the first start completes, nothing more
        assert out.plan["feasible"]
        latest.value = 1  # the job's own generation is the newest: it runs to its end
        job = SolveJob(
            demo_scenario_document(),
            SolverOptions(algorithm="agh", time_budget_s=30.0, max_starts=2),
            generation=1,
            explain=False,
        )
        assert solve_job(job).solver["termination"] != "stopped"
    finally:
        worker._LATEST = None


def test_evaluate_judges_the_live_plan_under_the_calibration_in_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The live plan was made under the calibration in force; /v1/evaluate judges
    it under the same one (it used the uncalibrated model and called a feasible
    live plan infeasible). The CLI, with no observations, stays uncalibrated."""
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        r = c.post("/v1/observations/latency", json={"observations": latency_items(2.0)})
        assert r.status_code == 202 and r.json()["changed"] is True
        live = wait_for_plan(c, r.json()["generation"])
        assert live["plan"]["feasible"] is True
        doc = c.post("/v1/evaluate", json={}).json()
        assert doc["plan_version"] == live["version"] and doc["calibrated"] is True
        assert doc["feasible"] is True, doc["violations"]
        spec = c.get("/v1/cluster").json()["spec"]
    (tmp_path / "s.json").write_text(json.dumps(spec))
    (tmp_path / "p.json").write_text(json.dumps(live["plan"]))
    cli_main(["evaluate", str(tmp_path / "s.json"), str(tmp_path / "p.json")])
    uncalibrated = json.loads(capsys.readouterr().out)
    # TPOT observed at 2x the model's: the calibrated fleet carries the same demand
    # with more replica-equivalents of load on every deployment
    loads = {d["id"]: d["load"] for d in uncalibrated["deployments"]}
    assert loads.keys() == {d["id"] for d in doc["deployments"]}
    assert all(d["load"] > 1.05 * loads[d["id"]] for d in doc["deployments"] if d["load"] > 0)
