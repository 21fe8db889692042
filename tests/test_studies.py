"""Smoke tests of the study code in bench/ (stress, rolling, report) on tiny inputs:
the demand-series builder, the rolling replay's cost accounting (against a hand
computation), the stress helpers and the report's table builders."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import load_bench

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
    acc = rolling.account(s, {"math": np.array([1.0, 2.0])}, [p1, p1], step=1)
    pols = {"svc-agh": {"label": "(a)", **acc}, "agh-mean": {"label": "(c)", **acc}}
    res = {"runs": [{"sigma": 0.04, "policies": pols}]}
    md = rolling.markdown(res)
    assert "| (a) |" in md and "| (c) |" in md and "+0.0%" in md
    assert "Re-planning" in md
    report = _load("report")
    a = {"runs": [{"sigma": 0.04, "demand": {}, "policies": {"gh": {"x": 1}}}]}
    b = {"runs": [{"sigma": 0.04, "demand": {}, "policies": {"svc-agh": {"x": 2}}}]}
    merged = report.merge_runs(a, None, b)
    assert len(merged) == 1 and list(merged[0]["policies"]) == ["svc-agh", "gh"]
    rows = report.compare_rows({"rows": [{"size": [6, 6, 10], "variant": "loose",
                                          "vs_opt": 0.05}, {"nothing": 1}]})  # fmt: skip
    assert rows == [{"size": "(6, 6, 10)", "variant": "loose", "gap": 0.05, "bound_gap": None}]


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
