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
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_support import client_for, fast_settings, perf_case, running, wait_for_plan

from app.cli import main as cli_main
from app.engine.api import DemandObservation, demo_scenario_document
from app.engine.contracts import SolverOptions
from app.service import worker
from app.service.schemas.perf import LatencyObservationIn
from app.service.store import ForecastRow
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


def test_a_type_removed_from_the_spec_keeps_the_others_forecasting(tmp_path: Path) -> None:
    """Its stored windows made every later post a 500 (the forecaster planned a type
    the spec no longer had), after storing the post's windows, and a restart did
    not help; the Prometheus source failed at every poll the same way."""
    settings = fast_settings(tmp_path)
    with client_for(settings) as c:
        wait_for_plan(c, 1)
        r = c.put("/v1/cluster", json={"spec": spec_with(forecast="last")})
        assert r.status_code == 200, r.text
        post(c, window("code", 0, 30.0), window("conversation", 0, 20.0))
        r = c.post(
            "/v1/cluster/demand", json={"mode": "merge", "query_types": [], "remove": ["code"]}
        )
        assert r.status_code == 202, r.text
        assert post(c, window("conversation", 1, 40.0))["accepted"] == 1
        types = c.get("/v1/cluster").json()["spec"]["query_types"]
        assert "code" not in {q["id"] for q in types}
        assert next(q["arrival_rate"] for q in types if q["id"] == "conversation") == 40.0
    with client_for(settings) as c:  # after a restart too
        wait_for_plan(c, 1)
        assert post(c, window("conversation", 2, 50.0))["accepted"] == 1
        report = c.get("/v1/forecast").json()
        assert [q["query_type"] for q in report["query_types"]].count("code") == 0


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


def test_a_policy_change_is_forecast_at_once(loop_client: TestClient) -> None:
    """A new method or quantile used to wait for the next window: GET /v1/forecast
    named the new policy on top and the old method on every type, and a replay
    that had ended kept the old rates. The PUT now forecasts again, and the
    stabilization window (which holds capacity through a dip of demand, not a
    change of policy) starts afresh."""
    c = loop_client
    for m in range(10):
        post(c, window("code", m, 60.0 if m == 8 else 20.0))
    assert code_rate(c) == pytest.approx(60.0)  # `last` saw 60 at minute 8; held since
    put = c.put(
        "/v1/cluster",
        json={"spec": spec_with(forecast="window_quantile", demand_quantile=0.5)},
    )
    assert put.status_code == 200, put.text
    # the answer is the spec after the re-forecast: the median of the windows held
    # (with the method's 1% margin), not the 60 the old stabilization held
    rate = next(q for q in put.json()["spec"]["query_types"] if q["id"] == "code")
    assert rate["arrival_rate"] == pytest.approx(20.2)
    assert put.json()["generation"] == c.get("/v1/cluster").json()["generation"]
    assert put.headers["etag"] == c.get("/v1/cluster").headers["etag"]
    code = next(q for q in c.get("/v1/forecast").json()["query_types"] if q["query_type"] == "code")
    assert code["forecast"]["method"] == "window_quantile"
    assert code["forecast"]["quantile"] == 0.5
    assert code["planned_rps"] == pytest.approx(20.2)
    # a PUT that leaves the forecast fields alone does not forecast again
    g = c.get("/v1/cluster").json()["generation"]
    spec = c.get("/v1/cluster").json()["spec"]
    spec["policy"]["max_utilization"] = 0.75
    assert c.put("/v1/cluster", json={"spec": spec}).json()["generation"] == g + 1


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


def refused(c: TestClient, kind: str, *items: dict[str, Any]) -> list[dict[str, str]]:
    """POST items to /v1/observations/`kind`, which must answer 422 and change
    nothing (no observation stored, the same generation); returns the errors."""
    store = running(c).store
    stored = (store.demand_since(0.0), store.latency_observations())
    before = c.get("/v1/cluster").json()["generation"]
    r = c.post(f"/v1/observations/{kind}", json={"observations": list(items)})
    assert r.status_code == 422, r.text
    assert (store.demand_since(0.0), store.latency_observations()) == stored
    assert c.get("/v1/cluster").json()["generation"] == before
    errors: list[dict[str, str]] = r.json()["errors"]
    return errors


def test_start_is_an_rfc3339_string_in_range(loop_client: TestClient) -> None:
    """Numbers are not guessed to be Unix seconds (or milliseconds); an offset that
    puts the instant before year 1 in UTC is a 422, not an OverflowError (500)."""
    c = loop_client
    for start in (T0, str(int(T0)), "0001-01-01T00:00:00+01:00"):
        errors = refused(
            c, "demand", window("code", 0, 1.0), {**window("code", 1, 1.0), "start": start}
        )
        assert [e["field"] for e in errors] == ["observations[1].start"], start
    latency = {**latency_items(1.0, 1)[0], "start": T0, "window_s": 60}
    assert [e["field"] for e in refused(c, "latency", latency)] == ["observations[0].start"]
    assert (
        post(c, {**window("code", 0, 1.0), "start": "2025-11-24T17:00:00+01:00"})["accepted"] == 1
    )
    assert running(c).store.demand_since(0.0)[0].start_s == T0  # the same instant


def test_windows_that_cannot_have_been_counted_are_refused(loop_client: TestClient) -> None:
    """A window ending after year 9999 (was a 500 after storing it, and every later
    request a 500) or far after the wall clock (moved the data time to 2100, so every
    real window after it was silently dropped) is a 422 naming its start."""
    c = loop_client
    for start in ("9999-12-31T23:59:00Z", "2100-01-01T00:00:00Z"):
        item = {"query_type": "code", "start": start, "window_s": 60, "requests": 1668}
        errors = refused(c, "demand", window("code", 0, 1.0), item)
        assert [e["field"] for e in errors] == ["observations[1].start"], start
    body = post(c, window("code", 0, 10.0))
    assert body["accepted"] == 1 and body["data_time"] == iso(T0 + 60)
    assert code_rate(c) == pytest.approx(10.0)
    assert c.get("/v1/forecast").json()["data_time"] == iso(T0 + 60)


def test_the_future_allowance_is_a_setting(tmp_path: Path) -> None:
    """A replay of simulated future days raises `observation_max_future_s`; a window
    that ends after 9999-12-31 is still refused (its end is no datetime)."""
    with client_for(fast_settings(tmp_path, observation_max_future_s=1e12)) as c:
        wait_for_plan(c, 1)
        errors = refused(
            c,
            "demand",
            {"query_type": "code", "start": "9999-12-31T23:59:00Z", "window_s": 60, "requests": 1},
        )
        assert errors[0]["field"] == "observations[0].start"
        assert "9999-12-31T23:59:59Z" in errors[0]["message"]
        item = {
            "query_type": "code",
            "start": "2100-01-01T00:00:00Z",
            "window_s": 60,
            "requests": 60,
        }
        assert post(c, item)["data_time"] == "2100-01-01T00:01:00Z"
        assert c.get("/v1/forecast").status_code == 200


def test_overlapping_windows_of_a_type_are_refused(loop_client: TestClient) -> None:
    """A 1 s window inside a stored 60 s one was counted on top of it (the planned
    rate rose); a window overlapping another of its type with a different start is
    a 422 naming the item. The same start replaces; other types do not interfere."""
    c = loop_client
    post(c, window("code", 0, 30.0))
    rate = code_rate(c)
    inside = {"query_type": "code", "start": iso(T0 + 10), "window_s": 1, "requests": 100}
    errors = refused(c, "demand", inside)
    assert [e["field"] for e in errors] == ["observations[0]"]
    assert "overlaps a stored window of 'code'" in errors[0]["message"]
    covering = {**window("code", 0, 30.0), "start": iso(T0 - 30), "window_s": 120}
    assert [e["field"] for e in refused(c, "demand", covering)] == ["observations[0]"]
    # within one request: the later item of the pair is named
    late = {**window("code", 5, 30.0), "start": iso(T0 + 5 * 60 + 30)}
    errors = refused(c, "demand", window("code", 4, 30.0), window("code", 5, 30.0), late)
    assert [e["field"] for e in errors] == ["observations[2]"]
    assert code_rate(c) == rate
    # the same start replaces (a shorter window too); adjacent windows and other types are fine
    again = post(c, {**window("code", 0, 30.0), "window_s": 30}, window("code", 1, 30.0))
    assert (again["accepted"], again["replaced"]) == (2, 1)
    assert post(c, {**inside, "query_type": "conversation"})["accepted"] == 1
    # the Prometheus source's path ignores such a window (reported) rather than
    # failing its chunk at every poll
    rows = [
        DemandObservation("code", T0 + 10, 1.0, 100.0),
        DemandObservation("code", T0 + 120, 60.0, 1800.0),
    ]
    ingest = partial(running(c).demand.ingest, rows, "source", skip_overlaps=True)
    done = c.portal.call(ingest)  # type: ignore[union-attr]
    assert (done.accepted, done.ignored) == (1, 1)
    assert done.ignored_reason is not None and "[0] overlaps a stored window" in done.ignored_reason


def test_windows_older_than_kept_are_ignored_and_reported(loop_client: TestClient) -> None:
    """A window older than the service keeps (5 days before the data time: the
    forecaster's memory, within observation_retention_s) was stored, pruned at once
    and reported as accepted; now it is not stored and is counted as ignored."""
    c = loop_client
    first = post(c, window("code", 0, 30.0))
    assert first["accepted"] == 1 and first["ignored"] == 0 and first["ignored_reason"] is None
    g = c.get("/v1/cluster").json()["generation"]
    stale = window("code", -6 * 24 * 60, 90.0)  # six days before
    body = post(c, stale)
    assert (body["accepted"], body["ignored"], body["changed"]) == (0, 1, False)
    assert "older than the service keeps" in body["ignored_reason"]
    assert c.get("/v1/cluster").json()["generation"] == g
    both = post(c, stale, window("code", 1, 30.0))
    assert (both["accepted"], both["ignored"]) == (1, 1)
    starts = [r.start_s for r in running(c).store.demand_since(0.0)]
    assert starts == [T0, T0 + 60]


def test_a_database_with_windows_that_cannot_be_right_recovers(tmp_path: Path) -> None:
    """Rows stored before such windows were refused (year 9999: every forecast and
    post was a 500, restarts included; 2100: real windows were dropped and the
    interval never came round) are skipped on start-up."""
    settings = fast_settings(tmp_path)
    with client_for(settings) as c:
        wait_for_plan(c, 1)
        assert c.put("/v1/cluster", json={"spec": spec_with(forecast="last")}).status_code == 200
        store = running(c).store
        # what the old code stored, and the forecasts it made at those data times
        y9999, y2100 = 253_402_300_740.0, 4_102_444_800.0  # 9999-12-31T23:59Z, 2100-01-01
        store.upsert_demand(
            [
                DemandObservation("code", y9999, 60.0, 1668.0),
                DemandObservation("code", y2100, 60.0, 60.0),
            ]
        )
        store.record_forecasts(
            [ForecastRow("code", t + 60, t + 240, t + 540, 1.0, "last") for t in (y9999, y2100)]
        )
    with client_for(settings) as c:
        r = c.get("/v1/forecast")
        assert r.status_code == 200, r.text
        assert r.json()["data_time"] is None
        # a 2% move (inside the dead band) is written: no update in this data's time
        # yet, so an interval is due (the 2100 forecast made it never due)
        rate = code_rate(c) * 1.02
        body = post(c, window("code", 0, rate))
        assert body["data_time"] == iso(T0 + 60) and body["changed"]
        assert code_rate(c) == pytest.approx(rate, rel=1e-3)


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
        # a what-if's whole answer is taken as its plan, as the CLI's plan files are
        # (it was a 422 listing every field of the answer that a plan lacks)
        solved = c.post("/v1/solve", json={"scenario": spec, "algorithm": "gh"})
        assert solved.status_code == 200, solved.text
        r = c.post("/v1/evaluate", json={"plan": solved.json()})
        assert r.status_code == 200, r.text
        direct = c.post("/v1/evaluate", json={"plan": solved.json()["plan"]}).json()
        assert r.json()["objective"] == pytest.approx(direct["objective"])
        (tmp_path / "solve.json").write_text(solved.text)
        assert cli_main(["evaluate", str(tmp_path / "s.json"), str(tmp_path / "solve.json")]) == 0
        assert json.loads(capsys.readouterr().out)["objective"] == pytest.approx(
            direct["objective"]
        )


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


# The README's example observation (Qwen2.5-7B on one H100 in bf16).
OBSERVED = {**MEASURED, "tp": 1, "pp": 1, "concurrency": 8, "ttft_s": 0.21, "tpot_s": 0.013}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"tp": 16}, "observations[1]", "exceeds gpus_per_node=8"),
        ({"pp": 8}, "observations[1]", "pp=8 not in pp_options"),
        ({"tp": 8}, "observations[1]", "does not divide the model's 28 attention heads"),
        ({"input_tokens": 1_000_000}, "observations[1]", "exceeds the model's max_context"),
        ({"model": "Llama-3.1-70B", "gpu": "L4"}, "observations[1]", "no memory for the KV"),
        ({"gpu": "A100-SXM-80GB", "precision": "fp8"}, "observations[1]", "not supported"),
        ({"tpot_s": 1e-300}, "observations[1].tpot_s", "greater than or equal to 0.000001"),
        ({"ttft_s": 1e-9}, "observations[1].ttft_s", "greater than or equal to 0.000001"),
    ],
)
def test_latency_of_a_deployment_that_cannot_exist_is_refused(
    loop_client: TestClient, change: dict[str, Any], field: str, says: str
) -> None:
    """Each was stored and fitted (tpot_s 1e-300 gave tpot_mape_before 1.3e299); now
    the engine's checks (those /v1/perf/estimate makes, memory, the policy's TP/PP
    options) and a 1 µs floor make it a 422 naming the item, and nothing is stored."""
    errors = refused(loop_client, "latency", OBSERVED, {**OBSERVED, **change})
    assert [e["field"] for e in errors] == [field]
    assert says in errors[0]["message"]
    assert loop_client.get("/v1/calibration").json()["in_force"] is None
    r = loop_client.post("/v1/observations/latency", json={"observations": [OBSERVED]})
    assert r.status_code == 202, r.text


def test_stored_latency_that_cannot_be_right_is_left_out_of_the_fit(tmp_path: Path) -> None:
    """Observations stored before they were refused do not reach the calibration
    (a restart refits from what is stored: nothing fails, they are counted as
    skipped); the Prometheus source's path skips such items instead of failing."""
    settings = fast_settings(tmp_path)
    with client_for(settings) as c:
        wait_for_plan(c, 1)
        bad = [{**OBSERVED, "tp": 16}, {**OBSERVED, "tpot_s": 1e-300}]
        running(c).store.insert_latency([(doc, None) for doc in bad])
    with client_for(settings) as c:
        wait_for_plan(c, 1)
        doc = c.get("/v1/calibration").json()
        assert (doc["observations"], doc["skipped"]) == (0, 2)
        latency = running(c).latency
        items = [LatencyObservationIn.model_validate(i) for i in [OBSERVED, {**OBSERVED, "tp": 16}]]
        out = c.portal.call(partial(latency.ingest, items, skip_invalid=True))  # type: ignore[union-attr]
        assert out.accepted == 1
        doc = c.get("/v1/calibration").json()
        assert (doc["observations"], doc["skipped"]) == (1, 2)


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
        before = c.get("/v1/calibration").json()
        assert (before["observations"], before["latest_fit_in_force"]) == (12, False)
    with client_for(settings) as c:  # a restart refits the same calibration
        after = c.get("/v1/calibration").json()
        # it reported the count of the observations in force (6) after a restart
        assert after == before


def test_a_restart_reports_the_latest_fit_in_force_when_it_is(tmp_path: Path) -> None:
    """`latest_fit_in_force` was false after every restart (two fits of the same
    observations are two objects)."""
    settings = fast_settings(tmp_path)
    with client_for(settings) as c:
        wait_for_plan(c, 1)
        r = c.post("/v1/observations/latency", json={"observations": latency_items(1.3)})
        assert r.json()["changed"] is True
        before = c.get("/v1/calibration").json()
        assert before["latest_fit_in_force"] is True
    with client_for(settings) as c:
        assert c.get("/v1/calibration").json() == before


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
