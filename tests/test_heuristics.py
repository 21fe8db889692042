"""GH and AGH (app/engine/greedy.py, agh.py, solve.py): property tests over
generated instances that the heuristics' own bookkeeping agrees with the one
evaluator, that AGH never ranks below GH, that local search never worsens its
start, determinism, warm starts; plus the mechanisms (M1, M3) and infeasible
input handled without exceptions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np
import pytest
from conftest import generated_instances
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.model.catalog import DEFAULT_PRECISIONS, catalog_gpu, catalog_model
from app.engine.model.demo import demo_scenario
from app.engine.model.domain import Policy, QueryType, Scenario
from app.engine.plan.candidates import CandidateTable, candidate_table
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.evaluation import Evaluation
from app.engine.plan.plan import Plan
from app.engine.solvers.agh import agh
from app.engine.solvers.greedy import Mechanisms, greedy
from app.engine.solvers.orders import type_order
from app.engine.solvers.search import Deadline, LocalSearch, better
from app.engine.solvers.solve import solve
from app.engine.solvers.state import AllocationState
from app.research.instances import generate, tp_bound_instance

BUDGET_S = 0.5  # AGH time budget; small instances converge well before it
CONVERGE_S = 60.0  # a guard only: the search must end by convergence
REL = 1e-6

PROPS = settings(max_examples=25)

instances = generated_instances()


def _table(args: tuple[int, int, int, int, str]) -> CandidateTable:
    return candidate_table(generate(*args))


def _feasible_by_rank(state: AllocationState) -> bool:
    return state.score()[0] == 0.0


def _assert_bookkeeping_agrees(
    table: CandidateTable, state: AllocationState, current: Plan | None = None
) -> Evaluation:
    ev = evaluate_plan(table.scenario, state.to_plan(), current=current)
    if _feasible_by_rank(state):
        assert ev.feasible, ev.violations
        assert ev.objective == pytest.approx(state.objective(), rel=REL, abs=1e-9)
    return ev


def _rank(ev: Evaluation) -> tuple[int, float]:
    return (0 if ev.feasible else 1, ev.objective)


def _not_worse(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """a ranks no worse than b (shortfall first, then cost)."""
    return not better(b, a)


# ------------------------------------------------------------------ properties


@PROPS
@given(instances)
def test_gh_bookkeeping_agrees_with_the_evaluator(args: tuple[int, int, int, int, str]) -> None:
    table = _table(args)
    _assert_bookkeeping_agrees(table, greedy(table))


@PROPS
@given(instances)
def test_agh_bookkeeping_agrees_and_never_ranks_below_gh(
    args: tuple[int, int, int, int, str],
) -> None:
    table = _table(args)
    gh = greedy(table)
    best, stats = agh(table, time_budget_s=BUDGET_S, seed=args[3])
    _assert_bookkeeping_agrees(table, best)
    assert _not_worse(best.score(), gh.score()), (best.score(), gh.score())
    assert stats.starts >= 1


@PROPS
@given(instances, st.integers(0, 3))
def test_local_search_never_worsens_its_start(
    args: tuple[int, int, int, int, str], order_seed: int
) -> None:
    table = _table(args)
    order = type_order(table, "random", np.random.default_rng(order_seed))
    start = greedy(table, order)
    before = start.score()
    snapshot = (start.r.copy(), start.x.copy(), start.u.copy())
    improved = LocalSearch(table, Mechanisms(), Deadline(30.0)).improve(start)
    assert _not_worse(improved.score(), before), (improved.score(), before)
    # the start itself is left untouched (moves work on copies)
    assert start.score() == before
    assert np.array_equal(start.r, snapshot[0]) and np.array_equal(start.x, snapshot[1])
    assert np.array_equal(start.u, snapshot[2])
    _assert_bookkeeping_agrees(table, improved)


@PROPS
@given(instances)
def test_agh_is_deterministic_for_a_seed(args: tuple[int, int, int, int, str]) -> None:
    table = _table(args)
    a, sa = agh(table, time_budget_s=30.0, seed=args[3], max_starts=9)
    b, sb = agh(table, time_budget_s=30.0, seed=args[3], max_starts=9)
    assert sa.termination == sb.termination == "completed"  # the start limit ended it: no proof
    assert a.to_plan() == b.to_plan()
    assert a.score() == b.score()
    assert sa.starts == sb.starts and sa.iterations == sb.iterations


@PROPS
@given(instances)
def test_warm_start_on_unchanged_scenario_keeps_the_plan(
    args: tuple[int, int, int, int, str],
) -> None:
    s = generate(*args)
    s = replace(s, policy=replace(s.policy, change_cost_per_gpu=0.5))
    table = candidate_table(s)
    first, _ = agh(table, time_budget_s=BUDGET_S, seed=args[3])
    p1 = first.to_plan()
    ev1 = evaluate_plan(s, p1)
    second, stats = agh(table, time_budget_s=BUDGET_S, seed=args[3], current=p1)
    ev2 = _assert_bookkeeping_agrees(table, second, current=p1)
    assert stats.warm_start_used or better(second.score(), first.score())
    if ev1.feasible:
        assert ev2.feasible
        # Never worse than keeping the live plan; it moves only when the move pays
        # for its own change cost.
        assert ev2.objective <= ev1.objective * (1 + 1e-9) + 1e-9
        if ev2.cost.change_cost > 0:
            assert ev2.objective < ev1.objective


def _scaled(s: Scenario, factor: float) -> Scenario:
    qts = tuple(replace(q, arrival_rate=q.arrival_rate * factor) for q in s.query_types)
    return replace(s, query_types=qts)


def _warm_vs_cold(args: tuple[int, int, int, int, str]) -> tuple[Evaluation, Evaluation]:
    s = generate(*args)
    s = replace(s, policy=replace(s.policy, change_cost_per_gpu=0.5))
    # Budgets that only guard: both searches end by convergence, so the comparison
    # does not depend on how busy the machine is (a warm search, with a cold twin
    # for every start, needs up to ~1.5 s here).
    live, _ = agh(candidate_table(s), time_budget_s=CONVERGE_S, seed=args[3])
    p1 = live.to_plan()
    s2 = _scaled(s, 1.3)
    table2 = candidate_table(s2)
    warm, ws = agh(table2, time_budget_s=CONVERGE_S, seed=args[3], current=p1)
    cold, cs = agh(table2, time_budget_s=CONVERGE_S, seed=args[3])
    assert ws.termination == cs.termination == "converged"
    ev_warm = _assert_bookkeeping_agrees(table2, warm, current=p1)
    ev_cold = evaluate_plan(s2, cold.to_plan(), current=p1)
    return ev_warm, ev_cold


@pytest.mark.parametrize(
    "args",
    [
        (6, 4, 6, 269, "loose"),
        (3, 6, 6, 33, "tight_budget"),
        (6, 2, 10, 671, "loose"),
        (6, 4, 4, 310, "tight_availability"),
        (5, 5, 10, 175, "tight_storage"),
        (6, 5, 4, 15, "loose"),
    ],
)
def test_warm_start_after_demand_change_not_worse_than_cold(
    args: tuple[int, int, int, int, str],
) -> None:
    ev_warm, ev_cold = _warm_vs_cold(args)
    assert _rank(ev_warm)[0] <= _rank(ev_cold)[0]
    if ev_warm.feasible and ev_cold.feasible:
        assert ev_warm.objective <= ev_cold.objective * (1 + 1e-9) + 1e-9


def _first_seed(pred: Callable[[int], bool], seeds: Iterable[int] = range(400, 460)) -> int:
    """The first seed whose instance meets a precondition (deterministic), so the
    property below is tested on a real case even after the model is recalibrated."""
    for seed in seeds:
        if pred(seed):
            return seed
    pytest.fail("no instance meets the precondition in the seed range")


def test_warm_start_after_demand_change_keeps_budget() -> None:
    def cold_feasible(seed: int) -> bool:
        return _warm_vs_cold((2, 2, 10, seed, "tight_budget"))[1].feasible

    seed = _first_seed(cold_feasible)
    ev_warm, ev_cold = _warm_vs_cold((2, 2, 10, seed, "tight_budget"))
    assert ev_cold.feasible
    assert ev_warm.feasible, ev_warm.violations


@pytest.mark.parametrize(
    "args", [(4, 4, 10, 24, "tight_availability"), (5, 5, 10, 211, "tight_availability")]
)
def test_warm_start_after_demand_change_local_optimum(
    args: tuple[int, int, int, int, str],
) -> None:
    ev_warm, ev_cold = _warm_vs_cold(args)
    assert ev_warm.feasible and ev_cold.feasible
    assert ev_warm.objective <= ev_cold.objective * (1 + 1e-9)


def test_agh_finds_a_known_feasible_plan() -> None:
    """Where a plan found for 1.3x the demand is feasible at 1x, AGH at 1x finds a
    feasible plan too."""

    def witness_feasible(seed: int) -> bool:
        s = generate(4, 4, 2, seed, "tight_budget")
        witness, _ = agh(candidate_table(_scaled(s, 1.3)), time_budget_s=BUDGET_S, seed=seed)
        return evaluate_plan(s, witness.to_plan()).feasible

    seed = _first_seed(witness_feasible)
    s = generate(4, 4, 2, seed, "tight_budget")
    best, _ = agh(candidate_table(s), time_budget_s=BUDGET_S, seed=seed)
    ev = evaluate_plan(s, best.to_plan())
    assert ev.feasible, ev.violations


# ------------------------------------------------------------------ repair


def test_repair_of_a_live_plan_respects_the_budget() -> None:
    from app.engine.solvers.agh import repair
    from app.engine.solvers.state import state_from_plan

    def live_feasible(seed: int) -> bool:
        s = generate(2, 2, 10, seed, "tight_budget")
        live, _ = agh(candidate_table(s), time_budget_s=BUDGET_S, seed=seed)
        return evaluate_plan(s, live.to_plan()).feasible

    seed = _first_seed(live_feasible)
    s = generate(2, 2, 10, seed, "tight_budget")
    live, _ = agh(candidate_table(s), time_budget_s=BUDGET_S, seed=seed)
    s2 = _scaled(s, 1.3)
    table2 = candidate_table(s2)
    st2 = repair(table2, state_from_plan(table2, live.to_plan()), Mechanisms())
    assert s2.policy.budget is not None
    assert st2.spend <= s2.policy.budget + 1e-9


# ------------------------------------------------------------------ solve facade


def test_solve_reports_the_evaluators_numbers() -> None:
    s = generate(4, 4, 6, 7, "loose")
    for alg in ("gh", "agh"):
        out = solve(s, alg, time_budget_s=BUDGET_S, seed=3)
        ev = evaluate_plan(s, out.plan)
        assert out.objective == pytest.approx(ev.objective)
        assert out.evaluation.violations == ev.violations
        doc = out.to_document()
        assert doc["algorithm"] == alg
        assert doc["plan"]["feasible"] == ev.feasible
        assert doc["objective"] == pytest.approx(ev.objective)
    with pytest.raises(ValueError):
        solve(s, "simplex")


def test_solve_warm_start_from_current_is_reported() -> None:
    s = generate(3, 3, 4, 11, "loose")
    p1 = solve(s, "agh", time_budget_s=BUDGET_S).plan
    out = solve(s, "agh", time_budget_s=BUDGET_S, current=p1)
    assert out.warm_start_used
    assert out.objective <= solve(s, "agh", time_budget_s=BUDGET_S).objective + 1e-9


# ------------------------------------------------------------------ mechanisms


def _m1_binding_instance() -> tuple[Scenario, CandidateTable]:
    """First seed whose tight-availability instance GH solves feasibly with M1 while
    the plan without M1 breaks availability or accuracy."""
    for seed in range(50):
        s = generate(4, 4, 4, seed, "tight_availability")
        table = candidate_table(s)
        on = evaluate_plan(s, greedy(table).to_plan())
        off = evaluate_plan(s, greedy(table, mech=Mechanisms(m1=False)).to_plan())
        bad = {v.constraint for v in off.violations}
        if on.feasible and bad & {"availability", "accuracy"}:
            return s, table
    raise AssertionError("no instance where M1 matters among 50 seeds")


def test_without_m1_plans_break_availability_or_accuracy() -> None:
    s, table = _m1_binding_instance()
    off = greedy(table, mech=Mechanisms(m1=False))
    ev = evaluate_plan(s, off.to_plan())
    assert {v.constraint for v in ev.violations} & {"availability", "accuracy"}
    assert off.score()[0] > 0  # GH's own rank agrees that it is infeasible
    best, _ = agh(table, time_budget_s=BUDGET_S, mech=Mechanisms(m1=False))
    ev_agh = evaluate_plan(s, best.to_plan())
    assert ev_agh.feasible == (best.score()[0] == 0.0)


def test_without_m1_availability_is_exceeded_somewhere() -> None:
    hits = 0
    for seed in range(10):
        s = generate(4, 4, 4, seed, "tight_availability")
        ev = evaluate_plan(s, greedy(candidate_table(s), mech=Mechanisms(m1=False)).to_plan())
        hits += any(v.constraint == "availability" for v in ev.violations)
    assert hits > 0


def test_m3_decides_feasibility_on_the_tp_bound_instance() -> None:
    s = tp_bound_instance()
    table = candidate_table(s)
    with_m3 = evaluate_plan(s, greedy(table).to_plan())
    without = evaluate_plan(s, greedy(table, mech=Mechanisms(m3=False)).to_plan())
    assert with_m3.feasible, with_m3.violations
    assert not without.feasible


def test_without_m2_gh_pays_more_on_the_demo() -> None:
    from app.engine.model.demo import demo_scenario

    s = demo_scenario()
    table = candidate_table(s)
    on, off = greedy(table), greedy(table, mech=Mechanisms(m2=False))
    ev_on = _assert_bookkeeping_agrees(table, on)
    ev_off = _assert_bookkeeping_agrees(table, off)
    assert ev_on.feasible and ev_off.feasible
    assert ev_off.objective > 1.5 * ev_on.objective


# ------------------------------------------------------------------ infeasible input


def _with_impossible_type(zeta: float = 0.0) -> Scenario:
    model = catalog_model("Llama-3.1-8B")
    gpu = catalog_gpu("L40S")
    assert model is not None and gpu is not None
    return Scenario(
        query_types=(
            QueryType("chat", 10.0, 1000, 200, 2.0, 0.1, 0.35, 0.01, task="general"),
            QueryType(
                "instant",
                3.0,
                1000,
                200,
                0.001,
                0.1,
                0.35,
                0.01,
                task="general",
                max_unmet_fraction=zeta,
            ),
        ),
        models=(model,),
        gpus=(replace(gpu, available=8),),
        precisions=DEFAULT_PRECISIONS,
        policy=Policy(),
    )


@pytest.mark.parametrize("alg", ["gh", "agh"])
def test_unservable_type_is_left_unmet_and_reported(alg: str) -> None:
    s = _with_impossible_type()
    table = candidate_table(s)
    assert not table.feasible[1].any() and table.feasible[0].any()
    out = solve(s, alg, time_budget_s=BUDGET_S)
    assert dict(out.plan.unmet) == {"instant": 1.0}
    assert [(v.constraint, v.subject) for v in out.evaluation.violations] == [
        ("unmet_cap", "instant")
    ]
    # the servable type is still served in full
    served = {t.query_type: t.served_fraction for t in out.evaluation.types}
    assert served["chat"] == pytest.approx(1.0)


def test_unservable_type_within_its_cap_is_feasible() -> None:
    s = _with_impossible_type(zeta=1.0)
    out = solve(s, "agh", time_budget_s=BUDGET_S)
    assert out.evaluation.feasible
    assert out.evaluation.cost.unmet_penalty == pytest.approx(3600 * 0.01 * 3.0)


@pytest.mark.parametrize("case", ["no_servable_type", "no_gpus_available"])
def test_agh_on_an_empty_candidate_table(case: str) -> None:
    s = _with_impossible_type(zeta=1.0)
    if case == "no_servable_type":
        s = replace(s, query_types=s.query_types[1:])
    else:
        s = replace(s, gpus=(replace(s.gpus[0], available=0),))
    assert candidate_table(s).size == 0
    gh = solve(s, "gh")
    assert all(f == 1.0 for f in gh.plan.unmet.values())
    out = solve(s, "agh", time_budget_s=BUDGET_S)
    assert out.plan.deployments == ()
    assert all(f == 1.0 for f in out.plan.unmet.values())


# ------------------------------------------------------ regressions (issue #13 §1–2)


def _demo() -> Scenario:
    return demo_scenario()


@settings(max_examples=12)
@given(
    cost=st.floats(0.0, 50.0),
    scale=st.floats(0.3, 2.0),
    keep=st.integers(0, 2**16),
)
def test_warm_agh_with_any_change_cost_never_raises(cost: float, scale: float, keep: int) -> None:
    """Change-cost credits make option costs zero or negative; the randomized
    (GRASP) choice used to draw from an empty list then (`a cannot be empty`)."""
    s = _demo()
    # A random prior plan: GH's plan for the demand scaled, with a random subset of
    # its deployments kept (routes to dropped ones are then simply missing).
    prior_s = replace(
        s,
        query_types=tuple(replace(q, arrival_rate=q.arrival_rate * scale) for q in s.query_types),
    )
    prior = greedy(candidate_table(prior_s)).to_plan()
    kept = tuple(d for k, d in enumerate(prior.deployments) if keep >> (k % 16) & 1)
    prior = Plan.build(kept, prior.routing, prior.unmet)
    s = replace(s, policy=replace(s.policy, change_cost_per_gpu=cost))
    out = solve(s, algorithm="agh", time_budget_s=5.0, seed=0, current=prior, max_starts=3)
    ev = evaluate_plan(s, out.plan, current=prior)
    assert ev.feasible, ev.violations  # the demo has a feasible plan at any change cost
    assert ev.objective == pytest.approx(out.objective)


def _unservable_code() -> Scenario:
    s = _demo()
    return replace(
        s,
        query_types=tuple(replace(q, ttft_s=0.001) if q.id == "code" else q for q in s.query_types),
    )


@pytest.mark.parametrize("start", ["gh", "agh-cold", "agh-warm"])
def test_a_type_nothing_can_serve_is_reported_unmet_and_priced(start: str) -> None:
    """Every planner and start: routed + unmet = 1 for every type; unserved demand
    is priced and a violation names the type (a warm start used to drop it)."""
    base = _demo()
    live = solve(base, algorithm="gh").plan
    s = _unservable_code()
    algorithm = "gh" if start == "gh" else "agh"
    current = live if start == "agh-warm" else None
    out = solve(s, algorithm=algorithm, time_budget_s=5.0, current=current, max_starts=3)
    routed: dict[str, float] = {}
    for r in out.plan.routing:
        routed[r.query_type] = routed.get(r.query_type, 0.0) + r.fraction
    for q in s.query_types:
        assert routed.get(q.id, 0.0) + out.plan.unmet.get(q.id, 0.0) == pytest.approx(1.0)
    assert out.plan.unmet.get("code") == pytest.approx(1.0)
    code = next(q for q in s.query_types if q.id == "code")
    penalty = 3600 * s.policy.horizon_h * code.unmet_penalty * code.arrival_rate
    assert out.evaluation.cost.unmet_penalty >= penalty * (1 - 1e-9)
    assert any(v.subject == "code" for v in out.evaluation.violations)
    code_report = next(t for t in out.evaluation.types if t.query_type == "code")
    assert code_report.unmet_fraction == pytest.approx(1.0)
