"""The exact MILP (app/engine/milp.py) and its CBC runner (app/engine/cbc.py).

* hand-worked instances: one query type, one model, two GPU types (one replica
  each of tp1pp1 bf16), whose optimum is found by enumerating the replica counts
  from the candidate table's constants (printed on failure), under several
  policies (availability, budget with unmet demand allowed, storage, change cost);
* every plan passes the evaluator; infeasible input is a result, not an exception;
* the wall-clock guard: time limits stop the subprocess, cancel kills it within a
  second, the process (group) is gone afterwards;
* properties (Hypothesis, derandomized): LP bound ≤ MILP objective; heuristic
  cost never below the MILP bound; MILP ≤ heuristic on the hand-worked instance.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import pytest
from conftest import generated_instances
from hypothesis import given, settings
from hypothesis import strategies as st
from support.milp_models import market_split_lp

from app.engine.model.catalog import DEFAULT_PRECISIONS, catalog_gpu, catalog_model
from app.engine.model.demo import demo_scenario
from app.engine.model.domain import Policy, QueryType, Scenario
from app.engine.plan.candidates import CandidateTable, candidate_table
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.plan import Deployment, Plan, Route
from app.engine.solvers.milp.audit import (
    MilpResult,
    MilpStatus,
    MilpTermination,
    audit,
    solve_milp,
)
from app.engine.solvers.milp.backends.cbc import classify, parse_bound, parse_solution_file
from app.engine.solvers.milp.backends.process import ProcessRun, run_process
from app.engine.solvers.milp.model import build_model
from app.engine.solvers.milp.relaxation import lp_relaxation
from app.engine.solvers.solve import solve
from app.research.instances import generate

REL = 1e-6
CHEAP, FAST = "L4", "H100-SXM"
MODEL = "Llama-3.1-8B"


# --------------------------------------------------------------------------------------
# hand-worked instance


def two_gpu_scenario(
    load_on_cheap: float = 2.0,
    avail: tuple[int, int] = (4, 4),
    max_unmet: float = 0.0,
    unmet_penalty: float = 0.02,
    delay_penalty: float | None = None,
    **policy: Any,
) -> Scenario:
    """One type, one model, GPUs L4 (cheap replica, low μ) and H100 (dear, high μ),
    tp1pp1 bf16 only: two candidates. The arrival rate is set so that the whole
    type is `load_on_cheap` L4 replicas' worth of load (the performance model may
    be recalibrated; the instance keeps its shape)."""
    model = catalog_model(MODEL)
    cheap, fast = catalog_gpu(CHEAP), catalog_gpu(FAST)
    assert model is not None and cheap is not None and fast is not None
    bf16 = next(p for p in DEFAULT_PRECISIONS if p.id == "bf16")
    qt = QueryType(
        "chat",
        1.0,
        1000,
        200,
        ttft_s=2.0,
        tpot_s=0.1,
        max_error_rate=0.5,
        unmet_penalty=unmet_penalty,
        max_unmet_fraction=max_unmet,
        delay_penalty=delay_penalty,
        task="general",
    )
    scenario = Scenario(
        (qt,),
        (model,),
        (replace(cheap, available=avail[0]), replace(fast, available=avail[1])),
        (bf16,),
        Policy(tp_options=(1,), pp_options=(1,), **policy),
    )
    probe = candidate_table(replace(scenario, gpus=(replace(cheap, available=1),)))
    mu_cheap = float(probe.pairs.mu[0, 0])
    return replace(scenario, query_types=(replace(qt, arrival_rate=load_on_cheap * mu_cheap),))


def best_routing(table: CandidateTable, r: tuple[int, ...]) -> float | None:
    """Cheapest routing of the single type given replicas r, or None: a
    fractional knapsack — fill the type's demand from the options (each
    candidate's capacity share at its delay cost per share; unmet up to ζ at the
    unmet cost per share) cheapest first."""
    cap_share = table.scenario.policy.max_utilization / table.load[0]
    options = [(float(table.delay_cost[0, k]), n * float(cap_share[k])) for k, n in enumerate(r)]
    options.append((float(table.unmet_cost[0]), float(table.max_unmet[0])))
    left, cost = 1.0, 0.0
    for per_share, room in sorted(options):
        take = min(left, room)
        cost += take * per_share
        left -= take
    return cost if left <= 1e-12 else None


def enumerate_optimum(table: CandidateTable, current: dict[str, int] | None = None) -> float:
    """The optimum by brute force over replica counts (one type, accuracy slack
    everywhere): cost(r) = rental + storage + change + the best routing's unmet
    and delay penalties (`best_routing`)."""
    s = table.scenario
    pol = s.policy
    assert table.size <= 2 and len(s.query_types) == 1 and table.feasible.all()
    assert (table.pairs.error[0] <= table.max_error[0]).all()
    cur = [float((current or {}).get(d, 0)) for d in table.ids]
    best = math.inf
    for r in itertools.product(*(range(int(m) + 1) for m in table.max_replicas)):
        gpus_by_type: dict[int, int] = {}
        for k, n in enumerate(r):
            g = int(table.gpu[k])
            gpus_by_type[g] = gpus_by_type.get(g, 0) + n * int(table.gpus_per_replica[k])
        if any(n > table.gpu_available[g] for g, n in gpus_by_type.items()):
            continue
        routing = best_routing(table, r)
        if routing is None:
            continue
        active = [k for k, n in enumerate(r) if n > 0]
        rental = float(sum(n * c for n, c in zip(r, table.replica_cost, strict=True)))
        storage = float(sum(table.storage_cost[k] for k in active))
        if pol.budget is not None and rental + storage > pol.budget + 1e-9:
            continue
        if pol.storage_capacity_gb is not None and (
            sum(table.weight_gb[k] for k in active) > pol.storage_capacity_gb + 1e-9
        ):
            continue
        change = 0.0
        if current is not None:
            change = pol.change_cost_per_gpu * float(
                sum(abs(n - c) * g for n, c, g in zip(r, cur, table.gpus_per_replica, strict=True))
            )
        best = min(best, rental + storage + change + routing)
    return best


def _constants(table: CandidateTable) -> str:
    return (
        f"ids={table.ids} mu={table.pairs.mu[0]} load={table.load[0]} "
        f"replica_cost={table.replica_cost} max_replicas={table.max_replicas} "
        f"unmet_cost={table.unmet_cost} storage_cost={table.storage_cost} "
        f"delay_cost={table.delay_cost[0]}"
    )


def _assert_sound(res: MilpResult, scenario: Scenario) -> None:
    """Invariants of every result."""
    assert res.termination in get_args(MilpTermination)
    assert res.solution_status in get_args(MilpStatus)
    if res.solution_status == "optimal":
        assert res.termination == "optimal"
    if res.termination != "optimal":
        assert res.solution_status != "optimal"
    if res.plan is None:
        assert res.solution_status == "none" and res.objective is None
    else:
        ev = evaluate_plan(scenario, res.plan)
        assert res.evaluation is not None
        assert res.objective == pytest.approx(res.evaluation.cost.total, rel=1e-12)
        assert ev.feasible == res.feasible
    if res.solver_objective is not None and res.objective is not None:
        # the model's objective is the evaluator's cost (up to solver tolerances)
        assert res.objective == pytest.approx(res.solver_objective, rel=1e-6, abs=1e-6)
    if res.bound is not None and res.objective is not None:
        assert res.bound <= res.objective * (1 + 1e-9) + 1e-9
    doc = res.to_document()
    assert doc["termination"] == res.termination and "plan" in doc
    json.dumps(doc, allow_nan=False)  # JSON-able, no inf/nan


CASES: dict[str, dict[str, Any]] = {
    # all on L4: 3 cheap replicas beat one dear one
    "cheap_wins": dict(load_on_cheap=2.0),
    # two L4 can't carry it: a mix or all-H100
    "availability_forces_mix": dict(load_on_cheap=2.0, avail=(2, 4)),
    # no H100 and not enough L4, but unmet allowed: leave demand unmet
    "unmet_when_short": dict(load_on_cheap=3.0, avail=(2, 0), max_unmet=0.6),
    # budget for one L4: the rest unmet at a penalty
    "budget_unmet": dict(load_on_cheap=2.0, max_unmet=0.7, budget=0.7),
    # unmet cheaper than a replica: dropped on purpose
    "cheap_penalty": dict(load_on_cheap=0.3, max_unmet=1.0, unmet_penalty=1e-6),
    # a delay penalty (slow L4 vs fast H100) shifts traffic to the dear GPU
    "delay_penalty": dict(load_on_cheap=1.5, delay_penalty=0.0005),
    # …and with unmet allowed and cheap, some traffic is better dropped than slow
    "delay_vs_unmet": dict(
        load_on_cheap=1.5, delay_penalty=0.0005, max_unmet=0.5, unmet_penalty=0.0005
    ),
    # storage price and a store for one deployment only
    "storage": dict(
        load_on_cheap=6.0, avail=(5, 2), storage_price_per_gb_h=0.05, storage_capacity_gb=20.0
    ),
}


@pytest.mark.milp
@pytest.mark.parametrize("case", sorted(CASES))
def test_hand_worked_optimum(case: str) -> None:
    kwargs = dict(CASES[case])
    scenario = two_gpu_scenario(**kwargs)
    table = candidate_table(scenario)
    expected = enumerate_optimum(table)
    res = solve_milp(scenario, time_limit_s=30)
    _assert_sound(res, scenario)
    assert res.termination == "optimal", (res.message, _constants(table))
    assert res.solution_status == "optimal"
    assert res.feasible, res.evaluation.violations if res.evaluation else None
    assert res.objective == pytest.approx(expected, rel=REL), _constants(table)
    assert res.bound is not None and res.relative_gap is not None
    assert res.relative_gap <= 1e-4


@pytest.mark.milp
def test_hand_worked_closed_form() -> None:
    """By hand: the type is exactly 2 L4 replicas' worth of load, so all-L4 needs
    ceil(2 / 0.8) = 3 replicas; one H100 replica carries it all (its load is
    below 0.8); any mix needs at least one H100 plus an L4. Optimum =
    min(3 · price_L4, price_H100)."""
    table = candidate_table(two_gpu_scenario(**CASES["cheap_wins"]))
    load_l4, load_h100 = table.load[0]
    price_l4, price_h100 = table.replica_cost
    assert load_l4 == pytest.approx(2.0) and load_h100 < 0.8, _constants(table)
    expected = min(3 * price_l4, price_h100)
    res = solve_milp(table.scenario, time_limit_s=30, table=table)
    assert res.termination == "optimal" and res.feasible
    assert res.objective == pytest.approx(expected, rel=REL), _constants(table)
    assert res.objective == pytest.approx(enumerate_optimum(table), rel=REL)


@pytest.mark.milp
def test_unmet_used_instead_of_infeasible() -> None:
    res = solve_milp(two_gpu_scenario(**CASES["unmet_when_short"]), time_limit_s=30)
    assert res.termination == "optimal" and res.feasible
    assert res.plan is not None and res.plan.unmet["chat"] == pytest.approx(1 - 2 * 0.8 / 3.0)


@pytest.mark.milp
def test_infeasible_is_a_result() -> None:
    scenario = two_gpu_scenario(load_on_cheap=3.0, avail=(2, 0), max_unmet=0.0)
    res = solve_milp(scenario, time_limit_s=30)
    _assert_sound(res, scenario)
    assert res.termination == "infeasible"
    assert res.solution_status == "none" and res.plan is None and not res.feasible
    assert res.bound is None
    assert res.to_document()["plan"] is None


@pytest.mark.milp
def test_change_cost_linearisation_and_foreign_deployment() -> None:
    """Keeping one live H100 replica beats switching to three L4 when each GPU
    started or stopped costs $5; a live deployment outside the table (tp2 is not an
    option) is stopped for sure: a constant in the objective."""
    scenario = two_gpu_scenario(load_on_cheap=2.0, change_cost_per_gpu=5.0, replan_interval_s=3600)
    table = candidate_table(scenario)
    fast_id = table.ids[1]
    assert FAST in fast_id
    current = Plan.build(
        [
            Deployment(MODEL, FAST, "bf16", 1, 1, 1),
            Deployment(MODEL, CHEAP, "bf16", 2, 1, 1),  # not a candidate: tp2
        ],
        [],
    )
    expected = enumerate_optimum(table, {fast_id: 1}) + 5.0 * 2
    res = solve_milp(scenario, time_limit_s=30, current=current)
    _assert_sound(res, scenario)
    assert res.termination == "optimal" and res.feasible
    assert res.objective == pytest.approx(expected, rel=REL), _constants(table)
    assert res.evaluation is not None and res.evaluation.cost.change_cost == pytest.approx(10.0)
    assert res.plan is not None and [d.id for d in res.plan.deployments] == [fast_id]
    # the evaluator's cost with the same live plan agrees
    ev = evaluate_plan(scenario, res.plan, current=current)
    assert ev.cost.total == pytest.approx(res.objective, rel=1e-12)


def test_model_has_variables_only_for_feasible_pairs() -> None:
    scenario = generate(3, 3, 4, seed=1)
    table = candidate_table(scenario)
    mm = build_model(table)
    assert len(mm.model.x) == int(table.feasible.sum())
    assert len(mm.model.r) == table.size
    assert (mm.r_ub <= table.max_replicas).all()
    assert not mm.has_z  # no storage price or capacity: no z needed


@pytest.mark.milp
def test_demo_audit_with_reference_and_warm_start() -> None:
    from app.engine.model.demo import demo_scenario
    from app.engine.solvers.solve import solve

    scenario = demo_scenario()
    gh = solve(scenario, "gh")
    res = audit(scenario, gh.plan, time_limit_s=60)
    _assert_sound(res, scenario)
    assert res.reference_cost == pytest.approx(gh.objective, rel=1e-12)
    assert res.reference_feasible is True
    assert res.warm_start_used
    assert res.feasible and res.objective is not None
    assert res.objective <= gh.objective * (1 + REL)
    assert res.bound is not None and res.certified_gap is not None
    assert res.certified_gap == pytest.approx((gh.objective - res.bound) / gh.objective, abs=1e-12)
    if res.termination == "optimal":
        assert res.relative_gap is not None and res.relative_gap <= 1e-4


@pytest.mark.milp
def test_highs_backend_agrees() -> None:
    pytest.importorskip("highspy")
    scenario = two_gpu_scenario(**CASES["availability_forces_mix"])
    a = solve_milp(scenario, time_limit_s=30, backend="cbc")
    b = solve_milp(scenario, time_limit_s=30, backend="highs")
    _assert_sound(b, scenario)
    assert b.solver == "highs" and b.termination == "optimal" and b.feasible
    assert b.objective == pytest.approx(a.objective, rel=REL)


# --------------------------------------------------------------------------------------
# the wall-clock guard


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process in process group `pgid`?"""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _group_dies(pgid: int) -> bool:
    """Wait (bounded, so a bug cannot hang the suite) until no live process is left
    in the group: a SIGKILLed process is gone only once the kernel has reaped it."""
    for _ in range(200):
        if not _group_alive(pgid):
            return True
        time.sleep(0.05)
    return False


def _when_file_exists(path: Path, then: Callable[[], None]) -> threading.Thread:
    """Call `then` once `path` exists: an event to wait on, not a clock."""

    def watch() -> None:
        for _ in range(2000):
            if path.exists():
                break
            time.sleep(0.01)
        then()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_guard_kills_a_process_that_ignores_sigint(tmp_path: Path) -> None:
    # The shell ignores SIGINT (the guard's polite stop) and then execs sleep, which
    # inherits that: only the SIGKILL at the deadline ends it.
    run = run_process(
        ["sh", "-c", "trap '' INT; exec sleep 60"], tmp_path / "log", time.monotonic() + 2.0
    )
    assert run.killed_on_deadline and not run.cancelled
    assert _group_dies(run.pid)


def test_guard_cancel_kills_the_whole_group(tmp_path: Path) -> None:
    """The cancel comes once the group has two processes (the shell wrote its
    marker after starting the background sleep); both must die."""
    cancel = threading.Event()
    marker = tmp_path / "both-running"
    _when_file_exists(marker, cancel.set)
    started: list[subprocess.Popen[bytes]] = []
    run = run_process(
        ["sh", "-c", f"sleep 60 & touch {marker}; sleep 60"],
        tmp_path / "log",
        time.monotonic() + 120,
        cancel,
        started.append,
    )
    assert marker.exists() and run.cancelled and not run.killed_on_deadline
    assert started[0].poll() is not None
    assert _group_dies(run.pid)


@pytest.mark.milp
def test_cbc_stops_at_its_limit_with_an_incumbent(tmp_path: Path) -> None:
    from app.engine.solvers.milp.backends.cbc import run_cbc

    lp = market_split_lp(tmp_path / "ms.lp")
    procs: list[subprocess.Popen[bytes]] = []
    out = run_cbc(lp, time_limit_s=1.0, on_start=procs.append)
    assert out.termination == "time_limit", out.message
    assert out.has_solution and out.objective is not None and out.bound is not None
    assert out.bound <= out.objective
    assert procs[0].poll() is not None and _group_dies(procs[0].pid)


@pytest.mark.milp
def test_cbc_killed_by_the_guard(tmp_path: Path) -> None:
    """CBC told it has 60 s but the wall clock says 1 s: the guard stops it."""
    from app.engine.solvers.milp.backends.cbc import run_cbc

    lp = market_split_lp(tmp_path / "ms.lp")
    procs: list[subprocess.Popen[bytes]] = []
    out = run_cbc(
        lp, time_limit_s=60.0, hard_deadline=time.monotonic() + 1.0, on_start=procs.append
    )
    assert out.termination == "time_limit"  # 60 s were not waited for: the guard stopped it
    assert procs[0].poll() is not None and _group_dies(procs[0].pid)


@pytest.mark.milp
def test_time_limit_stops_cbc() -> None:
    scenario = generate(12, 12, 12, seed=0, variant="tight_storage")  # > 20 s for CBC
    procs: list[subprocess.Popen[bytes]] = []
    limit = 3.0
    res = solve_milp(scenario, time_limit_s=limit, on_process=procs.append)
    _assert_sound(res, scenario)
    assert len(procs) == 1, res.message  # the solver did start
    assert res.termination == "time_limit", res.message
    assert res.solution_status != "optimal"
    for p in procs:
        assert p.poll() is not None
        assert _group_dies(p.pid)


@pytest.mark.milp
@pytest.mark.slow
def test_hard_kill_when_cbc_ignores_its_limit() -> None:
    """At this size CBC spends several seconds in the root LP, where it does not
    look at its clock: the guard must kill it."""
    scenario = generate(20, 20, 20, seed=0)
    procs: list[subprocess.Popen[bytes]] = []
    table = candidate_table(scenario)
    limit = 4.0
    res = solve_milp(scenario, time_limit_s=limit, table=table, on_process=procs.append)
    _assert_sound(res, scenario)
    assert res.termination == "time_limit"
    for p in procs:
        assert p.poll() is not None and _group_dies(p.pid)


@pytest.mark.milp
def test_cancel_kills_cbc() -> None:
    """The cancel comes once CBC runs (its process exists); the solve returns
    `cancelled` with no plan and CBC's process group is gone. (How fast is a
    benchmark's business, not a test's.)"""
    scenario = generate(12, 12, 12, seed=0, variant="tight_storage")
    cancel = threading.Event()
    procs: list[subprocess.Popen[bytes]] = []

    def started(p: subprocess.Popen[bytes]) -> None:
        procs.append(p)
        cancel.set()

    res = solve_milp(scenario, time_limit_s=60, cancel=cancel, on_process=started)
    assert len(procs) == 1
    _assert_sound(res, scenario)
    assert res.termination == "cancelled" and res.solution_status == "none"
    assert procs[0].poll() is not None
    assert _group_dies(procs[0].pid)


def test_cancel_before_start_is_a_result() -> None:
    cancel = threading.Event()
    cancel.set()
    res = solve_milp(two_gpu_scenario(), time_limit_s=10, cancel=cancel)
    assert res.termination == "cancelled" and res.plan is None


# --------------------------------------------------------------------------------------
# parsing


def test_parse_solution_file_statuses() -> None:
    text = "Optimal - objective value 8.00000000\n      0 x1   2   0\n      2 x3   1.5  1\n"
    status, obj, values = parse_solution_file(text)
    assert status == "Optimal" and obj == 8.0 and values == {"x1": 2.0, "x3": 1.5}
    run = ProcessRun(0, 1.0, False, False, 1)
    assert classify(status, obj, run) == ("optimal", True)
    lp_only = "Stopped on time (no integer solution - continuous used) - objective value 10.9"
    st_, ob, _ = parse_solution_file(lp_only)
    assert classify(st_, ob, run) == ("time_limit", False)
    assert classify("Stopped on time", 12.0, run) == ("time_limit", True)
    assert classify("Integer infeasible", 1e50, run) == ("infeasible", False)
    assert classify("", None, ProcessRun(-9, 1.0, False, True, 1)) == ("time_limit", False)
    assert classify(
        "Status unknown", None, run, "Bound tightening: infeasibility proved — skipping solve."
    ) == ("infeasible", False)


def test_parse_bound_rounds_down_printed_precision() -> None:
    log = "Result - Stopped on time limit\nObjective value:  12\nLower bound:  10.9202\n"
    b = parse_bound(log)
    assert b is not None and 10.9201 < b < 10.9202
    node = "  10075   201   27       12                11.0734    7.72%      100.0\n"
    nb = parse_bound(node)
    assert nb is not None and 11.0733 < nb < 11.0734
    assert parse_bound("nothing here") is None


# --------------------------------------------------------------------------------------
# properties

PROPS = settings(max_examples=8)

small_instances = generated_instances(types=(2, 5), models=(2, 4), tiers=(2, 4, 6))


@pytest.mark.milp
@PROPS
@given(small_instances)
def test_lp_bound_below_milp_objective(args: tuple[int, int, int, int, str]) -> None:
    scenario = generate(*args)
    table = candidate_table(scenario)
    lp = lp_relaxation(scenario, time_limit_s=30, table=table)
    res = solve_milp(scenario, time_limit_s=30, table=table)
    _assert_sound(res, scenario)
    if res.termination == "optimal":
        assert lp.status == "optimal" and lp.bound is not None
        assert res.objective is not None and res.feasible
        assert lp.bound <= res.objective * (1 + 1e-6) + 1e-6
    if lp.status == "infeasible":
        assert res.termination == "infeasible"


def _heuristic_available() -> bool:
    try:
        from app.engine.solvers.solve import solve  # noqa: F401
    except ImportError:
        return False
    return True


needs_heuristic = pytest.mark.skipif(not _heuristic_available(), reason="solve.py not there")


@pytest.mark.milp
@needs_heuristic
@PROPS
@given(small_instances, st.sampled_from(["gh", "agh"]))
def test_heuristic_never_below_milp_bound(args: tuple[int, int, int, int, str], alg: str) -> None:
    from app.engine.solvers.solve import solve

    scenario = generate(*args)
    out = solve(scenario, alg, time_budget_s=0.3, seed=args[3])
    res = audit(scenario, out.plan, time_limit_s=30)
    _assert_sound(res, scenario)
    if out.evaluation.feasible:
        assert res.termination != "infeasible"
        assert res.bound is not None
        assert out.objective >= res.bound * (1 - 1e-9) - 1e-9
        assert res.certified_gap is not None and res.certified_gap >= 0
        if res.feasible and res.objective is not None:
            assert res.objective <= out.objective * (1 + 1e-6) + 1e-9
    if res.termination == "infeasible":
        assert not out.evaluation.feasible


@pytest.mark.milp
@needs_heuristic
@pytest.mark.parametrize("case", ["cheap_wins", "availability_forces_mix", "storage"])
@pytest.mark.parametrize("alg", ["gh", "agh"])
def test_milp_not_above_heuristic_on_hand_worked(case: str, alg: str) -> None:
    from app.engine.solvers.solve import solve

    scenario = two_gpu_scenario(**CASES[case])
    heur = solve(scenario, alg, time_budget_s=0.3)
    res = solve_milp(scenario, time_limit_s=30)
    assert res.termination == "optimal" and res.objective is not None
    assert res.objective == pytest.approx(enumerate_optimum(candidate_table(scenario)), rel=REL)
    if heur.evaluation.feasible:
        assert res.objective <= heur.objective * (1 + REL)


def test_pids_are_ours() -> None:
    # sanity of the /proc helper used above
    assert _group_alive(os.getpgid(0))


def test_time_limit_spent_building_is_reported() -> None:
    procs: list[subprocess.Popen[bytes]] = []
    scenario = generate(6, 6, 6, seed=3)
    res = solve_milp(scenario, time_limit_s=1e-3, on_process=procs.append)
    _assert_sound(res, scenario)
    assert res.termination == "time_limit" and res.solution_status == "none"
    assert not procs


def test_killed_solver_falls_back_to_its_accepted_warm_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the guard kills CBC after it accepted the MIP start, the warm start is
    the incumbent we hold: reported as time_limit / feasible, never optimal."""
    import app.engine.solvers.milp.backends as backends
    import app.engine.solvers.milp.backends.cbc as cbc

    def killed(*args: Any, **kwargs: Any) -> cbc.CbcOutcome:
        return cbc.CbcOutcome(
            "time_limit", False, None, 1.0, mipstart_used=True, message="killed by the guard"
        )

    monkeypatch.setattr(backends, "run_cbc", killed)
    scenario = two_gpu_scenario(**CASES["cheap_wins"])
    warm = Plan.build(
        [Deployment(MODEL, FAST, "bf16", 1, 1, 1)],
        [Route("chat", Deployment(MODEL, FAST, "bf16", 1, 1, 1).id, 1.0)],
    )
    res = solve_milp(scenario, time_limit_s=10, warm_start=warm)
    _assert_sound(res, scenario)
    assert res.termination == "time_limit" and res.solution_status == "feasible"
    assert res.plan == warm and res.feasible and res.warm_start_used
    assert res.bound == 1.0 and res.relative_gap is not None and res.relative_gap > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_solver_dies_with_a_hard_killed_caller(tmp_path: Path) -> None:
    """The caller (e.g. the service's audit process) is SIGKILLed mid-solve: the
    solver, in its own session, must not live on as an orphan."""
    pid_file = tmp_path / "pid"
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from app.engine.solvers.milp.backends.process import run_process\n"
        f"run_process(['sleep', '60'], Path({str(tmp_path / 'log')!r}), time.monotonic() + 60,\n"
        f"            on_start=lambda p: Path({str(pid_file)!r}).write_text(str(p.pid)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    caller = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "solver never started"
            time.sleep(0.05)
        solver = int(pid_file.read_text())
        time.sleep(0.3)  # let the shim exec the solver
        assert _group_alive(solver)
        caller.kill()
        caller.wait()
        deadline = time.monotonic() + 2
        while _group_alive(solver) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(solver)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()


@pytest.mark.parametrize("rate", [0.0, 1e-8, 1e-12])
@pytest.mark.parametrize("algorithm", ["gh", "agh", "milp-cbc", "milp-highs"])
def test_a_type_with_no_or_negligible_demand_gets_a_feasible_plan(
    algorithm: str, rate: float
) -> None:
    """At 1e-8 req/s GH and AGH routed the type to a deployment of 0 replicas and
    the MILP's coverage rows fell below its tolerance; at 0 the MILP routed it to a
    candidate it rented nothing of. Every plan broke its own evaluator (coverage,
    structure, unmet cap). A rate below MIN_ARRIVAL_RPS is now 0, and the MILP
    routes a type with no demand to a rented deployment that can serve it."""
    s = demo_scenario()
    first = replace(s.query_types[0], arrival_rate=rate)
    s = replace(s, query_types=(first, *s.query_types[1:]))
    assert s.query_types[0].arrival_rate == 0.0
    if algorithm.startswith("milp"):
        r = solve_milp(s, time_limit_s=60, backend=algorithm.split("-")[1])
        assert r.termination == "optimal" and r.plan is not None
        plan = r.plan
    else:
        plan = solve(s, algorithm, time_budget_s=1.0, max_starts=2).plan
    ev = evaluate_plan(s, plan)
    assert ev.feasible, [v.message for v in ev.violations]
    assert sum(rt.fraction for rt in plan.routing if rt.query_type == first.id) == 1.0
