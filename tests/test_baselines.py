"""The paper v2's baselines (app/engine/baselines.py): LPR, DVR, HF.

Each is checked by the one evaluator, never beats the MILP's proven bound, and
on the hand-worked two-GPU instance (tests/test_milp.py) gives the cost worked
out from the candidate table's constants.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import generated_instances
from hypothesis import given, settings
from test_milp import CASES, enumerate_optimum, two_gpu_scenario

from app.engine.plan.candidates import candidate_table
from app.engine.plan.evaluate import evaluate_plan
from app.engine.solvers.milp.audit import solve_milp
from app.engine.solvers.milp.relaxation import lp_relaxation
from app.research.baselines import BASELINES, BaselineResult, dvr, hf, lpr, run_baseline, subtable
from app.research.instances import generate

REL = 1e-6


def _assert_checked(res: BaselineResult) -> None:
    """The baseline's numbers are the evaluator's."""
    assert res.scenario is not None
    if res.plan is None:
        assert res.evaluation is None and not res.feasible and res.message
        return
    ev = evaluate_plan(res.scenario, res.plan)
    assert res.evaluation is not None
    assert res.feasible == ev.feasible
    assert res.objective == pytest.approx(ev.cost.total, rel=1e-12)
    if not res.feasible:
        assert res.message
    doc = res.to_document()
    assert doc["baseline"] == res.name and doc["feasible"] == res.feasible


@pytest.mark.milp
def test_hf_is_the_best_single_gpu_fleet() -> None:
    """HF = min over GPU types of the optimum restricted to that type (by
    enumeration), here where mixing types would be cheaper."""
    scenario = two_gpu_scenario(**CASES["availability_forces_mix"])
    table = candidate_table(scenario)
    per_type = [
        enumerate_optimum(subtable(table, table.gpu == g)) for g in sorted(set(table.gpu.tolist()))
    ]
    res = hf(scenario, time_limit_s=20)
    _assert_checked(res)
    assert res.feasible and res.objective is not None
    assert res.objective == pytest.approx(min(per_type), rel=REL)
    assert res.objective >= enumerate_optimum(table) * (1 - REL)
    assert len({d.gpu for d in res.plan.deployments}) == 1  # type: ignore[union-attr]


@pytest.mark.milp
def test_hf_gh_method_is_feasible_and_not_below_milp_method() -> None:
    scenario = two_gpu_scenario(**CASES["cheap_wins"])
    fast = hf(scenario, time_limit_s=20, method="gh")
    exact = hf(scenario, time_limit_s=20, method="milp")
    _assert_checked(fast)
    assert fast.feasible and exact.feasible
    assert exact.objective <= fast.objective * (1 + REL)  # type: ignore[operator]


@pytest.mark.milp
def test_dvr_ignores_replica_rounding() -> None:
    """The whole type is 2 L4 replicas' worth of load: per unit of capacity the
    H100 is cheaper, so DVR provisions one H100 replica, although three L4 replicas
    cost less — the decoupling's blind spot."""
    scenario = two_gpu_scenario(**CASES["cheap_wins"])
    table = candidate_table(scenario)
    per_capacity = table.replica_cost * table.load[0]
    k = int(np.argmin(per_capacity))
    expected = math.ceil(table.load[0, k] / 0.8 - 1e-9) * table.replica_cost[k]
    res = dvr(scenario, time_limit_s=20)
    _assert_checked(res)
    assert res.feasible and res.objective is not None
    assert res.objective == pytest.approx(expected, rel=REL)
    assert res.objective >= enumerate_optimum(table) * (1 - REL)


@pytest.mark.milp
def test_lpr_rounds_up_the_lp() -> None:
    scenario = two_gpu_scenario(**CASES["cheap_wins"])
    table = candidate_table(scenario)
    lp = lp_relaxation(scenario, table=table)
    res = lpr(scenario, time_limit_s=20, table=table)
    _assert_checked(res)
    assert res.feasible
    assert lp.bound is not None and res.details["lp_bound"] == lp.bound
    assert lp.bound <= enumerate_optimum(table) * (1 + REL) <= res.objective * (1 + REL)  # type: ignore[operator]


@pytest.mark.milp
def test_baselines_report_infeasible_input() -> None:
    scenario = two_gpu_scenario(load_on_cheap=3.0, avail=(2, 0), max_unmet=0.0)
    for name in BASELINES:
        res = run_baseline(name, scenario, time_limit_s=10)
        _assert_checked(res)
        assert not res.feasible and res.message


def test_unknown_baseline() -> None:
    with pytest.raises(ValueError):
        run_baseline("nope", two_gpu_scenario())


def test_subtable_keeps_constants() -> None:
    table = candidate_table(generate(3, 3, 4, seed=2))
    keep = table.gpu == table.gpu[0]
    sub = subtable(table, keep)
    assert sub.size == int(keep.sum())
    assert sub.ids == [d for d, k in zip(table.ids, keep, strict=True) if k]
    np.testing.assert_array_equal(sub.load, table.load[:, keep])
    np.testing.assert_array_equal(sub.replica_cost, table.replica_cost[keep])


PROPS = settings(max_examples=5)


@pytest.mark.milp
@PROPS
@given(generated_instances(types=(2, 5), models=(2, 4), tiers=(2, 4, 6)))
def test_baselines_never_beat_the_milp_bound(args: tuple[int, int, int, int, str]) -> None:
    scenario = generate(*args)
    table = candidate_table(scenario)
    exact = solve_milp(scenario, time_limit_s=30, table=table)
    for name in BASELINES:
        res = run_baseline(name, scenario, time_limit_s=10, table=table)
        _assert_checked(res)
        if res.feasible:
            assert exact.termination != "infeasible", name
            if exact.bound is not None:
                assert res.objective >= exact.bound * (1 - 1e-9) - 1e-9, name  # type: ignore[operator]
        if name == "lpr" and res.evaluation is not None:
            over = [v for v in res.evaluation.violations if v.constraint == "availability"]
            assert not over or "repair failed" in res.message
