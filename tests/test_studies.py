"""Smoke tests of the study code in bench/ (stress, rolling, report) on tiny inputs:
the demand-series builder, the rolling replay's cost accounting (against a hand
computation), the stress helpers and the report's table builders."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import ROOT, load_bench

from app.engine.model.demo import demo_scenario
from app.engine.model.domain import Scenario
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.plan import Deployment, Plan
from app.engine.solvers.solve import solve

_load = load_bench


@pytest.fixture(scope="module")
def rolling() -> ModuleType:
    return _load("rolling")


@pytest.fixture(scope="module")
def stress() -> ModuleType:
    return _load("stress")


# ------------------------------------------------------------------------------------
# demand series


def test_demand_series_is_deterministic_per_seed_and_shaped(rolling: ModuleType) -> None:
    s = demo_scenario()
    a = rolling.demand_series(s, 0.04, seed=7, minutes=240)
    b = rolling.demand_series(s, 0.04, seed=7, minutes=240)
    c = rolling.demand_series(s, 0.04, seed=8, minutes=240)
    assert list(a) == [q.id for q in s.query_types]
    for q in s.query_types:
        assert a[q.id].shape == (240,)
        assert np.all(np.isfinite(a[q.id])) and np.all(a[q.id] >= 0)
        np.testing.assert_array_equal(a[q.id], b[q.id])
        assert not np.array_equal(a[q.id], c[q.id])


def test_demand_series_day_mean_and_diurnal_ratio(rolling: ModuleType) -> None:
    s = demo_scenario()
    d = rolling.demand_series(s, 0.04, seed=0)
    for q in s.query_types:
        v = d[q.id]
        assert len(v) == 1440
        # the day's mean is the demo's rate (shape and volatility have mean 1)
        assert v.mean() == pytest.approx(q.arrival_rate, rel=0.05)
        hourly = v.reshape(24, 60).mean(axis=1)
        assert 12 <= int(hourly.argmax()) <= 18  # afternoon peak
    ratio = rolling.envelope(10.0)
    assert ratio.max() / ratio.min() == pytest.approx(10.0, rel=0.01)
    assert rolling.envelope(2.0).mean() == pytest.approx(1.0, abs=1e-9)


def test_volatility_uses_common_random_numbers(rolling: ModuleType) -> None:
    s = demo_scenario()
    lo = rolling.demand_series(s, 0.0, seed=1, minutes=120)
    hi = rolling.demand_series(s, 0.08, seed=1, minutes=120)
    ratio = np.log(hi["code"] / lo["code"]) + 0.5 * 0.08**2  # = 0.08 * eps
    assert np.std(ratio) == pytest.approx(0.08, rel=0.3)


def test_snapshots_are_trailing_means(rolling: ModuleType) -> None:
    d = {"x": np.arange(10.0)}
    snaps = rolling.snapshots(d, step=5)
    assert len(snaps) == 2
    assert snaps[0]["x"] == pytest.approx(np.mean([5, 6, 7, 8, 9]))  # wraps at t = 0
    assert snaps[1]["x"] == pytest.approx(np.mean([0, 1, 2, 3, 4]))
    assert rolling.peak_hour_mean(np.array([1.0, 5.0, 3.0, 0.0]), window=2) == 4.0


# ------------------------------------------------------------------------------------
# rolling replay accounting


def _one_type_scenario() -> tuple[Scenario, Plan]:
    s = demo_scenario()
    math_type = next(q for q in s.query_types if q.id == "math")
    s = replace(s, query_types=(replace(math_type, arrival_rate=3.0),))
    plan = solve(s, "gh").plan  # capacity for 3 req/s at 80% utilization
    assert plan.deployments and not plan.unmet
    return s, plan


def test_rolling_accounting_matches_hand_computation(rolling: ModuleType) -> None:
    s, p1 = _one_type_scenario()
    p2 = Plan.build([replace(d, replicas=2 * d.replicas) for d in p1.deployments], p1.routing, {})
    p3 = Plan.build([], [], {"math": 1.0})  # serve nothing
    rates = [1.0, 2.0, 0.5]  # all within p1's capacity
    out = rolling.account(s, {"math": np.array(rates)}, [p1, p2, p3], step=1)

    price = {g.id: g.price_per_hour for g in s.gpus}
    rental1 = sum(price[d.gpu] * d.gpus for d in p1.deployments)  # $/h
    gpus1 = p1.total_gpus
    phi = s.query_types[0].unmet_penalty
    per_minute = [rental1 / 60, 2 * rental1 / 60, 60 * phi * rates[2]]
    np.testing.assert_allclose(out["per_minute"]["cost"], per_minute, rtol=1e-9)
    assert out["total_cost"] == pytest.approx(sum(per_minute))
    assert out["rental"] == pytest.approx(3 * rental1 / 60)
    assert out["penalties"] == pytest.approx(60 * phi * 0.5)
    # churn: p1 -> p2 adds gpus1, p2 -> p3 stops 2 gpus1
    assert out["per_step_churn"] == [0, gpus1, 2 * gpus1]
    assert out["churn_gpus"] == 3 * gpus1
    assert out["reconfiguration_cost"] == pytest.approx(0.5 * 3 * gpus1)
    assert out["unmet_share"] == pytest.approx(0.5 / 3.5)
    assert out["violation_share"] == 0.0
    assert out["mean_gpus"] == pytest.approx((gpus1 + 2 * gpus1 + 0) / 3)


def test_rolling_accounting_counts_overload_as_violation(rolling: ModuleType) -> None:
    s, p1 = _one_type_scenario()
    out = rolling.account(s, {"math": np.array([3.0, 30.0])}, [p1, p1], step=1)
    assert out["per_minute"]["violating_rps"][0] == 0.0
    assert out["per_minute"]["violating_rps"][1] > 0.0
    assert out["slo_violation_share"] > 0.0
    assert out["churn_gpus"] == 0


def test_churn_counts_gpus_per_deployment(rolling: ModuleType) -> None:
    a = Plan.build([Deployment("m", "g", "bf16", 2, 1, 3)], [], {})
    b = Plan.build(
        [Deployment("m", "g", "bf16", 2, 1, 1), Deployment("m", "h", "bf16", 1, 1, 2)], []
    )
    assert rolling.churn(None, a) == 0
    assert rolling.churn(a, b) == 4 + 2
    assert rolling.churn(b, b) == 0


# ------------------------------------------------------------------------------------
# stress helpers and report


def test_stress_point_at_nominal_is_the_planned_cost(stress: ModuleType) -> None:
    s, plan = _one_type_scenario()
    p = stress.stress_point(s, plan, 1.0, 1.0, 1.0)
    assert p["realised_cost"] == pytest.approx(evaluate_plan(s, plan).cost.total)
    assert p["violation_share"] == 0.0 and p["slo_violation_share"] == 0.0
    worse = stress.stress_point(s, plan, 1.0, 1.0, 10.0)
    assert worse["slo_violation_share"] > 0.0
    assert worse["realised_cost"] > p["realised_cost"]


def test_critical_variant(stress: ModuleType) -> None:
    s = demo_scenario()
    c = stress.critical_variant(s, 20.0, budget_share=0.8, max_unmet=0.3)
    assert c.policy.budget == pytest.approx(16.0)
    assert all(q.max_unmet_fraction >= 0.3 for q in c.query_types)
    assert [q.arrival_rate for q in c.query_types] == [q.arrival_rate for q in s.query_types]


def test_report_tables_from_tiny_results(rolling: ModuleType) -> None:
    s, p1 = _one_type_scenario()
    demand = {"math": np.array([1.0, 2.0])}
    cheap = rolling.account(s, demand, [p1, p1], planned={"math": [1.5, 1.5]})
    dear = {**cheap, "total_cost": 2 * cheap["total_cost"], "churn_gpus": 3}
    day = {
        "name": "tiny", "description": "two minutes", "held_out": False, "minutes": 2,
        "best_fixed": "agh-peak",
        "policies": {
            "svc-wq": {"label": "(wq)", **cheap, "churn_gpus": 2},
            "svc-mean": {"label": "(mean)", **dear},
            "agh-peak": {"label": "(fixed)", **dear},
        },
    }  # fmt: skip
    md = rolling.markdown(
        {"meta": {"demand_quantile": 0.5, "default_policy": "svc-wq"}, "days": [day]}
    )
    assert "| **svc-wq** |" in md and "| agh-peak (best fixed) |" in md and "-50.0%" in md
    v = rolling.verdicts(day, "svc-wq", 0.5)
    assert v["saving_vs_best_fixed"] == pytest.approx(0.5) and v["saving_met"]
    assert v["violation_met"] and v["churn"] == (2, 3) and v["churn_met"]
    assert v["coverage"] == (0.5, None, 0.5) and v["coverage_met"]  # 1 <= 1.5, 2 > 1.5
    report = _load("report")
    opt = {"kind": "optimum", "value": 10.0}
    rows = report.compare_rows({"instances": [
        {"types": 8, "group": "tuned", "reference": opt,
         "agh1": {"cost": 10.5, "feasible": True}, "gh": {"cost": 9.0, "feasible": False}},
        {"types": 4, "group": "held-out", "reference": opt,
         "agh5": {"cost": 10.0, "feasible": True}},
        {"types": 6, "group": "held-out", "reference": {"kind": "infeasible", "value": None},
         "agh1": {"cost": 3.0, "feasible": True}},
    ]})  # fmt: skip
    assert rows == [
        {"size": "4", "variant": "held-out AGH 5 s", "gap": 0.0, "bound_gap": None},
        {"size": "8", "variant": "tuned AGH 1 s", "gap": pytest.approx(0.05), "bound_gap": None},
    ]
    assert report.compare_rows({"rows": []}) == []  # an unknown layout: nothing to plot
    res = {"meta": {"demand_quantile": 0.5, "default_policy": "svc-wq"}, "days": [day]}
    assert any("tiny" in line for line in report.rolling_summary(res))
    (line,) = report.target_lines(res)
    assert "cost met (50.0% cheaper than agh-peak)" in line and "churn met (2 vs 3" in line


# ------------------------------------------------------------------------------------
# the closed loop: actuation delay, raw observations, the controllers through the app


def test_in_force_applies_the_actuation_delay(rolling: ModuleType) -> None:
    # published at the start of minute 1 (after minute 0 was observed): in force from 1 + 3
    assert rolling.in_force(6, "a", [(1, "b")], 3) == ["a", "a", "a", "a", "b", "b"]
    # two plans within the delay: each serves from its own actuation, in publishing order
    assert rolling.in_force(6, "a", [(1, "b"), (2, "c")], 2) == ["a", "a", "a", "b", "c", "c"]
    assert rolling.in_force(3, "a", [(0, "b")], 0) == ["b", "b", "b"]
    assert rolling.in_force(3, "a", [(5, "b")], 3) == ["a", "a", "a"]  # never in force


def test_accounting_with_actuation_delay_and_coverage(rolling: ModuleType) -> None:
    s, p1 = _one_type_scenario()
    p0 = Plan.build([], [], {"math": 1.0})  # serves nothing
    rates = np.array([1.0, 2.0, 4.0, 1.0, 0.5])
    # p1 published at minute 1 with a 2-minute delay: minutes 0-2 still "served" by p0
    force = rolling.in_force(5, (p0, 0.0), [(1, (p1, 3.0))], 2)
    out = rolling.account(
        s, {"math": rates}, [p for p, _ in force], planned={"math": [r for _, r in force]}
    )
    price = {g.id: g.price_per_hour for g in s.gpus}
    rental1 = sum(price[d.gpu] * d.gpus for d in p1.deployments)
    phi = s.query_types[0].unmet_penalty
    expected = [60 * phi * 1.0, 60 * phi * 2.0, 60 * phi * 4.0, rental1 / 60, rental1 / 60]
    np.testing.assert_allclose(out["per_minute"]["cost"], expected, rtol=1e-9)
    assert out["unmet_share"] == pytest.approx(7.0 / rates.sum())
    assert out["churn_gpus"] == p1.total_gpus and out["fleet_changes"] == 1
    # planned 0, 0, 3, 3, 3 against 1, 2, 4, 1, 0.5: minutes 3 and 4 are covered
    assert out["coverage"] == pytest.approx(2 / 5)


def test_minute_counts_and_windows(rolling: ModuleType) -> None:
    rates = np.array([0.0, 1.5, 10.0])
    np.testing.assert_array_equal(rolling.minute_counts(rates, None), [0.0, 90.0, 600.0])
    a = rolling.minute_counts(rates, np.random.default_rng(3))
    b = rolling.minute_counts(rates, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a[0] == 0 and np.all(a == np.round(a))
    big = rolling.minute_counts(np.full(2000, 10.0), np.random.default_rng(0))
    assert big.mean() == pytest.approx(600, rel=0.01) and big.var() == pytest.approx(600, rel=0.1)
    w = rolling.minute_windows("code", np.array([5.0, 7.0, 9.0]), 1, 3, 1_715_558_400.0)
    assert w == [
        {"query_type": "code", "start": "2024-05-13T00:01:00Z", "window_s": 60.0,
         "requests": 7.0},
        {"query_type": "code", "start": "2024-05-13T00:02:00Z", "window_s": 60.0,
         "requests": 9.0},
    ]  # fmt: skip


def test_fixed_sizing_and_oracle_grid(rolling: ModuleType) -> None:
    v = np.array([1.0, 2.0, 3.0, 10.0] + [1.0] * 60)
    sz = rolling.fixed_sizing(v)
    assert sz["max"] == 10.0 and sz["p99"] <= sz["p999"] <= sz["max"]
    assert sz["peak"] == pytest.approx((16.0 + 56.0) / 60)  # not wrapping around
    g = rolling.oracle_grid(np.array([0.0, 1.0, 5.0]))
    assert g[0] == pytest.approx(rolling.ORACLE_MIN_RPS) and g[-1] >= 5.0
    np.testing.assert_allclose(np.diff(np.log(g)), rolling.ORACLE_STEP)


def test_fresh_rental_rounds_each_planned_rate_up_the_grid(rolling: ModuleType) -> None:
    curve = {"grid": [1.0, 2.0, 4.0], "rental_per_h": [6.0, 12.0, 24.0]}
    # 0.5 -> 1, 1 -> 1, 1.5 -> 2, 3 -> 4, 9 -> beyond the grid: its last plan
    got = rolling.fresh_rental(curve, [0.5, 1.0, 1.5, 3.0, 9.0])
    assert got == pytest.approx((6 + 6 + 12 + 24 + 24) / 60)


def _tiny_day(rolling: ModuleType, counts: list[float], test_start: int, minutes: int) -> object:
    return rolling.StudyDay(
        "tiny", "math", np.array(counts, dtype=np.float64), test_start, minutes, False,
        "known answers", rolling.day_scenario("math"), 1_764_000_000.0,
    )  # fmt: skip


def test_observation_controller_through_the_app(rolling: ModuleType, tmp_path: Path) -> None:
    from service_support import client_for, fast_settings

    # 10 req/s for five minutes of history, then 20, 20.5, 5, 5, 5 req/s
    day = _tiny_day(rolling, [600.0] * 5 + [1200.0, 1230.0, 300.0, 300.0, 300.0], 5, 5)
    with client_for(fast_settings(tmp_path)) as c:
        spec = rolling.service_spec(
            day,
            "svc-last",
            {
                "replan_interval_s": 300.0,
                "replan_deadband": 0.05,
                "scale_down_stabilization_s": 600.0,
            },
        )
        rolling.fresh_fleet(c, spec)
        run = rolling.run_observation_loop(c, day)
    assert run.initial[1] == {"math": 10.0}  # history: minute 0 moved the rate, 1-3 did not
    assert run.posts == 5  # one 60 s window a minute: minutes 4 .. 8
    # only minute 5's 20 req/s leaves the dead band (posted at the start of minute 1 of
    # the span); 20.5 is inside it and the drop to 5 waits for the stabilization window
    assert [(k, r) for k, _, r in run.published] == [(1, {"math": 20.0})]
    info = rolling.summarize_service(day, "svc-last", run, 0.0, delay_min=3)
    # the new plan is in force from minute 1 + 3 = 4
    assert info["per_minute"]["planned_rps"] == [10.0, 10.0, 10.0, 10.0, 20.0]
    assert info["coverage"] == pytest.approx(3 / 5)  # 20 and 20.5 ran above 10
    # the service's count over the span: the windows it got from minute 4 (the first
    # forecast's actuation) on, 10 req/s in force: minutes 4, 7, 8 covered, 5 and 6 not
    cov = info["service_coverage"]
    assert (cov["windows"], cov["above_planned"]) == (5, 2)


def test_posted_mean_controller_through_the_app(rolling: ModuleType, tmp_path: Path) -> None:
    from service_support import client_for, fast_settings

    counts = [60.0 * r for r in [1, 1, 1, 1, 1, 2, 2, 2, 2, 7, 4, 4, 4, 4, 4]]
    day = _tiny_day(rolling, counts, 5, 10)
    with client_for(fast_settings(tmp_path)) as c:
        rolling.fresh_fleet(c, rolling.service_spec(day, "svc-mean", {}))
        run = rolling.run_mean_loop(c, day)
    assert run.initial[1] == {"math": 1.0}  # the 5 minutes before the span
    assert [(k, r) for k, _, r in run.published] == [(5, {"math": 3.0})]  # minutes 5-9


# ------------------------------------------------------------------------------------
# provenance (issue #13 §9: results must name the commit actually run)


def test_provenance_names_the_commit_run_and_uncommitted_changes(tmp_path: Path) -> None:
    import subprocess

    prov = _load("provenance")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True
        ).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "app").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "app" / "x.py").write_text("a = 1\n")
    git("add", "-A")
    git("commit", "-qm", "one")
    head = git("rev-parse", "--short", "HEAD")
    assert prov.git_rev(tmp_path) == head
    # A study run with a bench script not yet committed says so.
    (tmp_path / "bench" / "study.py").write_text("print(1)\n")
    (tmp_path / "app" / "x.py").write_text("a = 2\n")
    record = prov.provenance("python3 bench/study.py", root=tmp_path)
    assert record["commit"] == head
    assert record["dirty"] == ["app/x.py", "bench/study.py"]
    assert record["git"] == f"{head}+uncommitted(app/x.py, bench/study.py)"


def test_merge_puts_side_by_side_runs_in_the_study_order(rolling: ModuleType) -> None:
    def run(cmd: str, days: list[str], git: str = "abc", wall: float = 10.0) -> dict[str, object]:
        meta = {"git": git, "seed": 0, "command": cmd, "started_at": cmd, "wall_s": wall}
        return {"meta": meta, "days": [{"name": d} for d in days]}

    merged = rolling.merge_results([run("b", ["surge", "code"], wall=30.0), run("a", ["ramp-6h"])])
    assert [d["name"] for d in merged["days"]] == ["code", "ramp-6h", "surge"]
    assert merged["meta"]["wall_s"] == 30.0 and merged["meta"]["started_at"] == "a"
    assert merged["meta"]["command"].startswith("b & a")
    with pytest.raises(SystemExit, match="differ in \\['git'\\]"):
        rolling.merge_results([run("a", ["code"]), run("b", ["surge"], git="def")])
    with pytest.raises(SystemExit, match="twice"):
        rolling.merge_results([run("a", ["code"]), run("b", ["code"])])


def test_the_quantile_oracle_plans_the_quantile_of_the_days_own_process() -> None:
    """bench/quantile_bound.py: the level it recovers is the random-walk day's without
    its minute noise, and the minute quantile it plans is covered that often by
    draws of the day's process (the bound is only as good as these two)."""
    qb = load_bench("quantile_bound")
    dd = load_bench("demand_days")
    lv = qb.level()
    w = dd.WARMUP_DAYS * dd.DAY
    day = dd.random_walk_days(qb.SEED, dd.WARMUP_DAYS + 2)[w : w + dd.DAY]
    noise = np.log(day / lv)
    assert abs(noise.mean()) < 0.005 and abs(noise.std() - dd.RW_NOISE_SD) < 0.005
    some = lv[::120]
    for q in (0.5, 0.95):
        planned = qb.minute_quantiles(some, q, samples=4000)
        rng = np.random.default_rng(7)
        rates = some[:, None] * np.exp(dd.RW_NOISE_SD * rng.standard_normal((len(some), 4000)))
        draws = rng.poisson(60.0 * rates) / 60.0
        assert abs(float((draws <= planned[:, None]).mean()) - q) < 0.02


def test_the_crowd_bound_reads_the_days_and_bounds_from_below() -> None:
    """bench/crowd_bound.py: the multiplier at the last minute no plan could have seen
    the crowd in is the days' own (both onsets reach 1.4 three minutes in), and the
    rental it charges lies at or below the rental of a plan for the planned rate."""
    cb = load_bench("crowd_bound")
    dd = load_bench("demand_days")
    start, rise, factor = cb.CROWDS["flash-crowd"]
    mult = dd.crowd_multiplier(start + 20, start, rise, start + 60, factor)
    assert cb.blind_multiplier(start, rise, factor, 3) == pytest.approx(mult[start + 3]) == 1.4
    assert cb.blind_multiplier(*cb.CROWDS["surge"], 3) == pytest.approx(1.4)
    assert cb.blind_multiplier(start, rise, factor, 0) == pytest.approx(1.1)
    # a curve that dips once (AGH's did): the cheapest plan carrying the rate counts
    curve = {"grid": [10.0, 20.0, 30.0, 40.0], "rental_per_h": [1.0, 3.0, 2.0, 4.0]}
    one_hour = np.full(60, 25.0)  # between grid rates 20 and 30
    r = cb.rental(curve, one_hour)
    assert r["lower"] == pytest.approx(2.0) and r["upper"] == pytest.approx(2.0)
    r = cb.rental(curve, np.full(60, 35.0))
    assert r["lower"] == pytest.approx(2.0) and r["upper"] == pytest.approx(4.0)
    r = cb.rental(curve, np.full(60, 45.0))
    assert r["minutes_above_grid"] == 60 and r["lower"] == pytest.approx(4.0)
    rising = {"grid": [10.0, 20.0, 30.0, 40.0], "rental_per_h": [1.0, 2.0, 3.0, 4.0]}
    ratio = cb.break_even(rising, np.full(60, 25.0), 0.8, target=2.0)  # 20 x ratio < 30
    assert 0.8 * ratio * 25.0 < 30.0 + 1e-9 <= 0.8 * (ratio + 0.01) * 25.0


def test_the_margin_frontier_recounts_scaled_plans_by_hand() -> None:
    """bench/margin_frontier.py on a two-minute day: rental of the grid rate at or
    above the scaled rate, capacity = that grid rate / max_utilization, requests
    above it charged at the type's unmet penalty ($0.01)."""
    mf = load_bench("margin_frontier")
    day = {
        "name": "tiny",
        "query_type": "code",
        "demand": {"code": [10.0, 30.0]},
        "fresh_plan_rental_curves": {"milp": {"grid": [10.0, 20.0], "rental_per_h": [6.0, 12.0]}},
        "policies": {
            "svc-ucm": {"per_minute": {"planned_rps": [10.0, 18.0]}},
            "fixed": {"total_cost": 1.0, "violation_share": 0.0},
        },
        "best_fixed": "fixed",
    }
    r = mf.day_row(day, 1.0, 0.8)
    # minute 0: grid 10 ($0.1), capacity 12.5; minute 1: grid 20 ($0.2), capacity 25 < 30
    assert r["rental"] == pytest.approx(0.3)
    assert r["violation_share"] == pytest.approx(5.0 * 60 / 2400)
    assert r["total"] == pytest.approx(0.3 + 300 * 0.01)
    assert not r["violation_met"] and not r["cost_met"]
    r = mf.day_row(day, 0.5, 0.8)  # 5 and 9 req/s: both at grid 10, capacity 12.5
    assert r["rental"] == pytest.approx(0.2)
    assert r["violation_share"] == pytest.approx(17.5 * 60 / 2400)


def test_the_load_benchmark_builds_its_scenario_from_any_directory(tmp_path: Path) -> None:
    """`python3 bench/service_load.py` failed with "No module named 'app'" before the
    load started unless PYTHONPATH named the checkout (other bench scripts put it on
    the path themselves)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = str(ROOT / "bench" / "service_load.py")
    code = (
        "import importlib.util as u, sys; "
        f"spec = u.spec_from_file_location('service_load', {script!r}); "
        "m = u.module_from_spec(spec); sys.modules['service_load'] = m; "
        "spec.loader.exec_module(m); "
        "s = m.large_scenario(50); print(len(s['query_types']), len(s['gpus']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["50", "12"]
