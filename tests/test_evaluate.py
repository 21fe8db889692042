"""The one evaluator (app/engine/evaluate.py) on hand-built scenarios and plans:
each plan breaks exactly one constraint, costs are computed by hand, stress
figures are checked for monotonicity and against hand-computed numbers, and
malformed plan documents are rejected naming the field."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from app.engine.errors import PlanFormatError
from app.engine.model.catalog import DEFAULT_PRECISIONS, catalog_gpu, catalog_model
from app.engine.model.domain import GPU, Model, Policy, QueryType, Scenario
from app.engine.plan.candidates import PairConstants, pair_constants
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.evaluation import Evaluation, plan_document
from app.engine.plan.plan import Deployment, Plan, Route, deployment_id, plan_from_document

L40S_PRICE = 1.2
A100_PRICE = 1.8
HORIZON = 2.0
LLAMA8 = "Llama-3.1-8B"
L40S = "L40S"
A100 = "A100-SXM-80GB"


def _model(mid: str) -> Model:
    m = catalog_model(mid)
    assert m is not None
    return m


def _gpu(gid: str, available: int) -> GPU:
    g = catalog_gpu(gid)
    assert g is not None
    return replace(g, available=available)


def tiny(**policy: Any) -> Scenario:
    """Two query types, one model (Llama-3.1-8B: general 0.33, code 0.27), two GPUs."""
    chat = QueryType("chat", 10.0, 1000, 200, 2.0, 0.12, 0.35, 0.01, task="general")
    code = QueryType("code", 5.0, 800, 20, 1.0, 0.05, 0.30, 0.01, task="code")
    pol = Policy(horizon_h=HORIZON, **policy)
    s = Scenario(
        (chat, code),
        (_model(LLAMA8),),
        (_gpu(L40S, 8), _gpu(A100, 4)),
        DEFAULT_PRECISIONS,
        pol,
    )
    assert s.gpus[0].price_per_hour == L40S_PRICE and s.gpus[1].price_per_hour == A100_PRICE
    assert s.models[0].error_rates["general"] == 0.33 and s.models[0].error_rates["code"] == 0.27
    return s


def with_type(s: Scenario, i: int, **changes: Any) -> Scenario:
    qts = list(s.query_types)
    qts[i] = replace(qts[i], **changes)
    return replace(s, query_types=tuple(qts))


def constants(
    s: Scenario, gpu: str, prec: str, tp: int = 1, pp: int = 1, model: str = LLAMA8
) -> PairConstants:
    return pair_constants(
        s,
        np.array([s.model_index()[model]]),
        np.array([s.gpu_index()[gpu]]),
        np.array([s.precision_index()[prec]]),
        np.array([tp]),
        np.array([pp]),
    )


def replicas_needed(s: Scenario, qt: str, frac: float, gpu: str, prec: str, tp: int = 1) -> int:
    """Fewest replicas whose max_utilization share carries frac of qt (hand formula)."""
    pc = constants(s, gpu, prec, tp)
    i = s.qt_index()[qt]
    mu = float(pc.mu[i, 0])
    assert pc.bstar[i, 0] >= 1 and mu > 0
    load = s.query_types[i].arrival_rate * frac / mu
    return math.ceil(load / s.policy.max_utilization)


def dep(gpu: str, prec: str, replicas: int, tp: int = 1, model: str = LLAMA8) -> Deployment:
    return Deployment(model, gpu, prec, tp, 1, replicas)


def did(gpu: str, prec: str, tp: int = 1, model: str = LLAMA8) -> str:
    return deployment_id(model, gpu, prec, tp, 1)


def feasible_plan(s: Scenario) -> Plan:
    """chat on L40S/bf16, code on A100/bf16, each with just enough replicas."""
    r_chat = replicas_needed(s, "chat", 1.0, L40S, "bf16")
    r_code = replicas_needed(s, "code", 1.0, A100, "bf16")
    return Plan.build(
        [dep(L40S, "bf16", r_chat), dep(A100, "bf16", r_code)],
        [Route("chat", did(L40S, "bf16"), 1.0), Route("code", did(A100, "bf16"), 1.0)],
    )


def fixed_plan(chat: float, code: float, unmet: dict[str, float] | None = None) -> Plan:
    """chat on 2 L40S/bf16 replicas, code on 1 A100/bf16 replica: each type's
    share routed there as given, `unmet` as given."""
    return Plan.build(
        [dep(L40S, "bf16", 2), dep(A100, "bf16", 1)],
        [Route("chat", did(L40S, "bf16"), chat), Route("code", did(A100, "bf16"), code)],
        unmet,
    )


def kinds(ev: Evaluation) -> set[str]:
    return {v.constraint for v in ev.violations}


# ------------------------------------------------------------------ feasible plan


def test_sanity_of_the_hand_built_case() -> None:
    s = tiny()
    # the replica counts the other tests rely on: chat needs 2 L40S, code 1 A100
    assert replicas_needed(s, "chat", 1.0, L40S, "bf16") == 2
    assert replicas_needed(s, "code", 1.0, A100, "bf16") == 1


def test_feasible_plan_has_no_violations_and_hand_computed_cost() -> None:
    s = tiny()
    plan = feasible_plan(s)
    ev = evaluate_plan(s, plan)
    assert ev.violations == ()
    assert ev.feasible
    rental = HORIZON * (L40S_PRICE * 2 + A100_PRICE * 1)
    assert ev.cost.rental == pytest.approx(rental)
    assert ev.cost.storage == 0.0
    assert ev.cost.unmet_penalty == 0.0
    assert ev.cost.delay_penalty == 0.0
    assert ev.cost.change_cost == 0.0
    assert ev.objective == pytest.approx(rental)
    assert ev.total_gpus == 3
    assert ev.gpus_by_type == {L40S: 2, A100: 1}
    served = {t.query_type: t.served_fraction for t in ev.types}
    assert served == pytest.approx({"chat": 1.0, "code": 1.0})
    errors = {t.query_type: t.error_rate for t in ev.types}
    assert errors == pytest.approx({"chat": 0.33, "code": 0.27})


def test_utilization_matches_hand_formula() -> None:
    s = tiny()
    ev = evaluate_plan(s, feasible_plan(s))
    mu = float(constants(s, L40S, "bf16").mu[0, 0])
    util = {d.id: d.utilization for d in ev.deployments}
    assert util[did(L40S, "bf16")] == pytest.approx(10.0 / mu / 2)
    assert util[did(L40S, "bf16")] <= s.policy.max_utilization


def test_storage_and_unmet_and_delay_costs_by_hand() -> None:
    s = tiny(storage_price_per_gb_h=0.01)
    s = with_type(s, 0, max_unmet_fraction=0.25, delay_penalty=0.001)
    r_chat = replicas_needed(s, "chat", 0.8, L40S, "bf16")
    plan = Plan.build(
        [dep(L40S, "bf16", r_chat), dep(A100, "bf16", 1)],
        [Route("chat", did(L40S, "bf16"), 0.8), Route("code", did(A100, "bf16"), 1.0)],
        {"chat": 0.2},
    )
    ev = evaluate_plan(s, plan)
    assert ev.feasible, ev.violations
    weights_gb = 2 * 8.03 * 2.0  # two bf16 copies of an 8.03 B-parameter model
    assert ev.cost.storage == pytest.approx(0.01 * HORIZON * weights_gb)
    assert ev.cost.unmet_penalty == pytest.approx(3600 * HORIZON * 0.01 * 10.0 * 0.2)
    delay = float(constants(s, L40S, "bf16").delay[0, 0])
    assert ev.cost.delay_penalty == pytest.approx(3600 * HORIZON * 0.001 * 10.0 * 0.8 * delay)
    rental = HORIZON * (L40S_PRICE * r_chat + A100_PRICE)
    assert ev.objective == pytest.approx(
        rental + ev.cost.storage + ev.cost.unmet_penalty + ev.cost.delay_penalty
    )


# ------------------------------------------------------------------ one violation each


def test_coverage_fractions_not_summing_to_one() -> None:
    s = tiny()
    plan = fixed_plan(0.9, 1.0)
    ev = evaluate_plan(s, plan)
    # The forgotten 0.1 of chat is unserved: a coverage violation, and unmet beyond
    # its cap (0), priced at its penalty and reported in the type's service.
    assert kinds(ev) == {"coverage", "unmet_cap"}
    cov = next(v for v in ev.violations if v.constraint == "coverage")
    assert cov.subject == "chat" and "chat" in cov.message
    assert cov.amount == pytest.approx(-0.1)
    chat = s.query_types[0]
    assert ev.cost.unmet_penalty == pytest.approx(
        0.1 * 3600 * s.policy.horizon_h * chat.unmet_penalty * chat.arrival_rate
    )
    assert next(t for t in ev.types if t.query_type == "chat").unmet_fraction == pytest.approx(0.1)


def test_coverage_over_one() -> None:
    # code at 1.05: error mass 0.27*1.05 = 0.2835 <= 0.30 and load fits one A100 replica
    s = tiny()
    plan = fixed_plan(1.0, 1.05)
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"coverage"}
    (v,) = ev.violations
    assert v.subject == "code" and v.amount == pytest.approx(0.05)


def test_unmet_above_cap() -> None:
    s = tiny()
    plan = fixed_plan(0.7, 1.0, {"chat": 0.3})
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"unmet_cap"}
    (v,) = ev.violations
    assert v.subject == "chat" and v.amount == pytest.approx(0.3)
    assert ev.cost.unmet_penalty == pytest.approx(3600 * HORIZON * 0.01 * 10.0 * 0.3)


def test_unmet_within_cap_is_feasible() -> None:
    s = with_type(tiny(), 0, max_unmet_fraction=0.3)
    plan = fixed_plan(0.7, 1.0, {"chat": 0.3})
    assert evaluate_plan(s, plan).feasible


def test_capacity_one_replica_short() -> None:
    s = tiny()
    need = replicas_needed(s, "chat", 1.0, L40S, "bf16")
    plan = Plan.build(
        [dep(L40S, "bf16", need - 1), dep(A100, "bf16", 1)],
        [Route("chat", did(L40S, "bf16"), 1.0), Route("code", did(A100, "bf16"), 1.0)],
    )
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"capacity"}
    (v,) = ev.violations
    assert v.subject == did(L40S, "bf16")
    mu = float(constants(s, L40S, "bf16").mu[0, 0])
    assert v.amount == pytest.approx(10.0 / mu - 0.8 * (need - 1))


def test_capacity_shared_by_two_types() -> None:
    # Both types on the same L40S deployment: the loads add up.
    s = tiny()
    pc = constants(s, L40S, "bf16")
    load = 10.0 / float(pc.mu[0, 0]) + 5.0 / float(pc.mu[1, 0])
    need = math.ceil(load / 0.8)
    routes = [Route("chat", did(L40S, "bf16"), 1.0), Route("code", did(L40S, "bf16"), 1.0)]
    ok = evaluate_plan(s, Plan.build([dep(L40S, "bf16", need)], routes))
    assert ok.feasible
    short = evaluate_plan(s, Plan.build([dep(L40S, "bf16", need - 1)], routes))
    assert kinds(short) == {"capacity"}


def test_availability_exceeded() -> None:
    s = tiny()
    plan = Plan.build(
        [dep(L40S, "bf16", 9), dep(A100, "bf16", 1)],  # 9 > 8 available
        [Route("chat", did(L40S, "bf16"), 1.0), Route("code", did(A100, "bf16"), 1.0)],
    )
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"availability"}
    (v,) = ev.violations
    assert v.subject == L40S and v.amount == 1


def test_availability_counts_tp_times_replicas_across_deployments() -> None:
    s = tiny()
    # A100: 1 x tp2 + 3 x tp1 = 5 GPUs > 4 available
    plan = Plan.build(
        [dep(L40S, "bf16", 2), dep(A100, "bf16", 1, tp=2), dep(A100, "int8", 3)],
        [
            Route("chat", did(L40S, "bf16"), 1.0),
            Route("code", did(A100, "bf16", tp=2), 1.0),
        ],
    )
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"availability"}
    assert ev.gpus_by_type[A100] == 5


def test_accuracy_bound_broken_by_precision_multiplier() -> None:
    s = tiny()
    # int8 multiplies the 0.33 general error by 1.15 -> 0.3795 > 0.35
    pc = constants(s, L40S, "int8")
    assert float(pc.error[0, 0]) == pytest.approx(0.33 * 1.15)
    need = replicas_needed(s, "chat", 1.0, L40S, "int8")
    plan = Plan.build(
        [dep(L40S, "int8", need), dep(A100, "bf16", 1)],
        [Route("chat", did(L40S, "int8"), 1.0), Route("code", did(A100, "bf16"), 1.0)],
    )
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"accuracy"}
    (v,) = ev.violations
    assert v.subject == "chat"
    assert v.amount == pytest.approx(0.33 * 1.15 - 0.35)


def test_accuracy_is_traffic_weighted() -> None:
    # 60% at 0.33 and 40% at 0.3795: 0.3498 <= 0.35 holds; 50/50 (0.35475) does not.
    s = tiny()

    def plan(f_int8: float) -> Plan:
        return Plan.build(
            [dep(L40S, "bf16", 2), dep(L40S, "int8", 2), dep(A100, "bf16", 1)],
            [
                Route("chat", did(L40S, "bf16"), 1.0 - f_int8),
                Route("chat", did(L40S, "int8"), f_int8),
                Route("code", did(A100, "bf16"), 1.0),
            ],
        )

    assert evaluate_plan(s, plan(0.4)).feasible
    assert kinds(evaluate_plan(s, plan(0.5))) == {"accuracy"}


def test_budget_exceeded() -> None:
    rental = HORIZON * (L40S_PRICE * 2 + A100_PRICE)
    s = tiny(budget=rental - 0.01)
    ev = evaluate_plan(s, feasible_plan(s))
    assert kinds(ev) == {"budget"}
    assert ev.violations[0].amount == pytest.approx(0.01)
    assert evaluate_plan(tiny(budget=rental), feasible_plan(s)).feasible


def test_storage_capacity_exceeded() -> None:
    s = tiny(storage_capacity_gb=20.0)  # two bf16 copies: 32.12 GB
    ev = evaluate_plan(s, feasible_plan(s))
    assert kinds(ev) == {"storage"}
    assert ev.violations[0].amount == pytest.approx(2 * 8.03 * 2 - 20.0)
    assert evaluate_plan(tiny(storage_capacity_gb=32.2), feasible_plan(s)).feasible


def _slo_case() -> tuple[Scenario, Plan]:
    s = with_type(tiny(), 0, tpot_s=0.001)  # no batch size meets 1 ms per token
    assert int(constants(s, L40S, "bf16").bstar[0, 0]) == 0
    plan = fixed_plan(1.0, 1.0)
    return s, plan


def test_slo_routing_to_a_candidate_with_no_feasible_batch() -> None:
    s, plan = _slo_case()
    ev = evaluate_plan(s, plan)
    slo = [v for v in ev.violations if v.constraint == "slo"]
    assert len(slo) == 1
    assert slo[0].subject == f"chat->{did(L40S, 'bf16')}"
    assert slo[0].amount == pytest.approx(1.0)
    # Nothing else about this plan is wrong (capacity may be reported as a consequence).
    assert kinds(ev) <= {"slo", "capacity"}


def test_slo_violation_is_reported_once_and_finitely() -> None:
    s, plan = _slo_case()
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"slo"}
    json.dumps(ev.to_document(), allow_nan=False)
    json.dumps(plan_document(plan, ev), allow_nan=False)


def test_model_without_error_rate_for_the_type_must_not_serve_it() -> None:
    s = tiny()
    s = with_type(s, 1, max_error_rate=1.0)
    m = replace(s.models[0], error_rates={"general": 0.33})  # no quality known for code
    s = replace(s, models=(m,))
    assert s.models[0].error_rate_for(s.query_types[1]) is None
    pc = constants(s, A100, "bf16")
    assert not bool(pc.feasible[1, 0])
    ev = evaluate_plan(s, feasible_plan(tiny()))
    slo = [v for v in ev.violations if v.constraint == "slo"]
    assert [v.subject for v in slo] == [f"code->{did(A100, 'bf16')}"]
    assert "error rate" in slo[0].message


@pytest.mark.parametrize(
    ("bad_dep", "needle"),
    [
        (Deployment("Nope-1B", L40S, "bf16", 1, 1, 2), "unknown model"),
        (Deployment(LLAMA8, "TPU-v9", "bf16", 1, 1, 2), "unknown gpu"),
        (Deployment(LLAMA8, L40S, "fp4", 1, 1, 2), "unknown precision"),
        (Deployment(LLAMA8, A100, "fp8", 1, 1, 2), "unsupported"),  # A100 has no fp8
        (Deployment(LLAMA8, L40S, "bf16", 3, 1, 2), "tp=3"),
        (Deployment(LLAMA8, L40S, "bf16", 1, 8, 2), "pp=8"),
    ],
)
def test_structure_bad_deployment(bad_dep: Deployment, needle: str) -> None:
    s = tiny()
    plan = Plan.build(
        [bad_dep, dep(A100, "bf16", 1)],
        [Route("chat", bad_dep.id, 1.0), Route("code", did(A100, "bf16"), 1.0)],
    )
    ev = evaluate_plan(s, plan)
    # chat's traffic is lost with the deployment: unserved beyond its cap (0)
    assert kinds(ev) == {"structure", "unmet_cap"}
    structure = [v for v in ev.violations if v.constraint == "structure"]
    assert all(v.subject == bad_dep.id for v in structure)
    assert any(needle in v.message for v in structure)
    assert [v.subject for v in ev.violations if v.constraint == "unmet_cap"] == ["chat"]
    # the broken deployment is neither rented nor counted
    assert ev.gpus_by_type.get(L40S, 0) == 0


def test_structure_tp_outside_policy_options() -> None:
    s = tiny(tp_options=(1, 2))
    need = replicas_needed(s, "chat", 1.0, L40S, "bf16", tp=4)
    plan = Plan.build(
        [dep(L40S, "bf16", need, tp=4), dep(A100, "bf16", 1)],
        [Route("chat", did(L40S, "bf16", 4), 1.0), Route("code", did(A100, "bf16"), 1.0)],
    )
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"structure", "unmet_cap"}
    assert "tp=4 not in tp_options" in ev.violations[0].message
    assert evaluate_plan(tiny(), plan).feasible  # the same plan under default options


def test_structure_tp_beyond_gpus_per_node() -> None:
    s = tiny()
    s = replace(s, gpus=(replace(s.gpus[0], gpus_per_node=2), s.gpus[1]))
    plan = Plan.build(
        [dep(L40S, "bf16", 1, tp=4), dep(A100, "bf16", 1)],
        [Route("chat", did(L40S, "bf16", 4), 1.0), Route("code", did(A100, "bf16"), 1.0)],
    )
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"structure", "unmet_cap"}
    assert "gpus_per_node" in ev.violations[0].message


def test_structure_tp_that_does_not_split_the_heads() -> None:
    """A deployment vLLM would refuse to start (28 heads over 8 GPUs) is broken: its
    traffic is unserved, its GPUs are not counted."""
    s = tiny()
    s = replace(s, models=tuple(replace(m, heads=28, kv_heads=4) for m in s.models))
    plan = Plan.build(
        [dep(L40S, "bf16", 1, tp=8), dep(A100, "bf16", 1)],
        [Route("chat", did(L40S, "bf16", 8), 1.0), Route("code", did(A100, "bf16"), 1.0)],
    )
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"structure", "unmet_cap"}
    assert ev.violations[0].message == "tp=8 does not divide the model's 28 attention heads"
    assert ev.gpus_by_type.get(L40S, 0) == 0


def test_structure_routing_to_a_deployment_not_in_the_plan() -> None:
    s = tiny()
    plan = Plan.build(
        [dep(L40S, "bf16", 2)],
        [Route("chat", did(L40S, "bf16"), 1.0), Route("code", did(A100, "bf16"), 1.0)],
    )
    ev = evaluate_plan(s, plan)
    assert kinds(ev) == {"structure", "unmet_cap"}
    v = ev.violations[0]
    assert v.subject == did(A100, "bf16")
    assert "not in the plan" in v.message
    # the lost traffic is not reported as served
    assert {t.query_type: t.served_fraction for t in ev.types}["code"] == 0.0


def test_structure_unknown_query_type_in_routing_and_unmet() -> None:
    s = tiny()
    base = feasible_plan(s)
    plan = Plan(base.deployments, base.routing, {"ghost": 0.5})
    assert kinds(evaluate_plan(s, plan)) == {"structure"}
    plan = Plan(base.deployments, (*base.routing, Route("ghost", did(L40S, "bf16"), 0.5)), {})
    assert kinds(evaluate_plan(s, plan)) == {"structure"}


# ------------------------------------------------------------------ change cost


def test_change_cost_against_the_current_plan() -> None:
    # A plan for the whole horizon: the change cost counts once (weight 1).
    s = tiny(change_cost_per_gpu=0.5, change_payback_s=3600 * HORIZON)
    plan = feasible_plan(s)  # L40S/bf16/tp1 x2, A100/bf16/tp1 x1
    current = Plan.build(
        [dep(L40S, "bf16", 3), dep(A100, "bf16", 1, tp=2)],
        [Route("chat", did(L40S, "bf16"), 1.0), Route("code", did(A100, "bf16", 2), 1.0)],
    )
    # |2-3|*1 (L40S) + 1*2 (A100 tp2 removed) + 1*1 (A100 tp1 added) = 4 GPUs
    ev = evaluate_plan(s, plan, current=current)
    assert ev.cost.change_cost == pytest.approx(0.5 * 4)
    assert ev.objective == pytest.approx(ev.cost.rental + 2.0)
    # and symmetric the other way round
    assert evaluate_plan(s, current, current=plan).cost.change_cost == pytest.approx(2.0)


def test_change_cost_weighs_against_the_payback() -> None:
    """Rental is priced per horizon (2 h here); a change must pay for itself within
    the payback (by default one hour): the one-off change cost counts 3600*2/3600 = 2
    times."""
    s = tiny(change_cost_per_gpu=0.5, replan_interval_s=300)
    plan, current = feasible_plan(s), Plan.build([dep(L40S, "bf16", 3)], [], {})
    # |2-3| L40S + 1 A100 added = 2 GPUs
    assert evaluate_plan(s, plan, current=current).cost.change_cost == pytest.approx(0.5 * 2 * 2)


def test_change_cost_weighs_against_one_replan_interval_without_a_payback() -> None:
    """`change_payback_s: null`: the payback is one re-plan interval (300 s), the
    one-off change cost counts 3600*2/300 = 24 times."""
    s = tiny(change_cost_per_gpu=0.5, replan_interval_s=300, change_payback_s=None)
    plan, current = feasible_plan(s), Plan.build([dep(L40S, "bf16", 3)], [], {})
    # |2-3| L40S + 1 A100 added = 2 GPUs
    assert evaluate_plan(s, plan, current=current).cost.change_cost == pytest.approx(0.5 * 2 * 24)


def test_change_payback_sets_the_weight_in_place_of_the_interval() -> None:
    """A change must pay for itself within `change_payback_s` of rental: with a
    payback of the whole horizon (2 h) the one-off cost counts once, whatever the
    re-plan interval; with none given, the interval is the payback."""
    current = Plan.build([dep(L40S, "bf16", 3)], [], {})
    for payback, weight in ((3600.0 * HORIZON, 1.0), (1800.0, 4.0), (None, 24.0)):
        s = tiny(change_cost_per_gpu=0.5, replan_interval_s=300, change_payback_s=payback)
        plan = feasible_plan(s)
        got = evaluate_plan(s, plan, current=current).cost.change_cost
        assert got == pytest.approx(0.5 * 2 * weight), payback


def test_change_cost_zero_without_current_or_against_itself_or_when_free() -> None:
    s = tiny(change_cost_per_gpu=0.5)
    plan = feasible_plan(s)
    assert evaluate_plan(s, plan).cost.change_cost == 0.0
    assert evaluate_plan(s, plan, current=plan).cost.change_cost == 0.0
    other = Plan.build([dep(L40S, "bf16", 7)], [])
    assert evaluate_plan(tiny(), plan, current=other).cost.change_cost == 0.0


# ------------------------------------------------------------------ stress


def test_no_stress_report_at_unit_factors() -> None:
    s = tiny()
    assert evaluate_plan(s, feasible_plan(s)).stress is None


def test_slo_violations_are_monotone_in_delay_factor() -> None:
    s = tiny()
    plan = feasible_plan(s)
    # error_factor 1.01 turns stress on without touching latencies (delay 1.0 baseline)
    base = evaluate_plan(s, plan, error_factor=1.01).stress
    assert base is not None and base.slo_violating_rps == 0.0
    prev = base.slo_violating_rps
    for f in (1.05, 1.2, 1.5, 2.0, 3.0):
        st = evaluate_plan(s, plan, delay_factor=f).stress
        assert st is not None
        assert st.delay_factor == f and st.demand_rps == pytest.approx(15.0)
        assert st.slo_violating_rps >= prev - 1e-9, f
        assert st.slo_violating_rps <= st.demand_rps + 1e-9
        prev = st.slo_violating_rps
    assert prev > 0  # the 3x slower world hurts this just-sized plan


def test_stress_monotone_on_the_demo_gh_plan() -> None:
    from app.engine.model.demo import demo_scenario
    from app.engine.solvers.solve import solve

    s = demo_scenario()
    plan = solve(s, "gh").plan
    a = evaluate_plan(s, plan, delay_factor=1.0, error_factor=1.01).stress
    b = evaluate_plan(s, plan, delay_factor=1.5, error_factor=1.01).stress
    assert a is not None and b is not None
    assert b.slo_violating_rps >= a.slo_violating_rps
    assert b.realised_cost >= a.realised_cost - 1e-9


def test_large_headroom_plan_meets_slo_at_1_2() -> None:
    s = tiny()
    plan = Plan.build(
        [dep(L40S, "bf16", 8), dep(A100, "bf16", 4)],
        [Route("chat", did(L40S, "bf16"), 1.0), Route("code", did(A100, "bf16"), 1.0)],
    )
    assert evaluate_plan(s, plan).feasible
    st = evaluate_plan(s, plan, delay_factor=1.2).stress
    assert st is not None
    assert st.slo_violating_rps == 0.0
    assert st.slo_violation_share == 0.0


@pytest.mark.parametrize(
    ("factor", "expected"),
    [
        (1.05, 0.0),  # chat 0.3465 <= 0.35, code 0.2835 <= 0.30
        (1.1, (0.33 * 1.1 - 0.35) * 10.0),  # chat 0.363 > 0.35; code 0.297 <= 0.30
        (1.2, (0.33 * 1.2 - 0.35) * 10.0 + (0.27 * 1.2 - 0.30) * 5.0),
    ],
)
def test_error_factor_accuracy_violations_by_hand(factor: float, expected: float) -> None:
    s = tiny()
    st = evaluate_plan(s, feasible_plan(s), error_factor=factor).stress
    assert st is not None
    assert st.accuracy_violating_rps == pytest.approx(expected, abs=1e-9)
    assert st.slo_violating_rps == 0.0  # latencies untouched
    assert st.accuracy_violation_share == pytest.approx(expected / 15.0, abs=1e-12)


def test_demand_factor_overloads_a_just_sized_plan() -> None:
    s = tiny()
    plan = feasible_plan(s)
    st = evaluate_plan(s, plan, demand_factor=3.0).stress
    assert st is not None
    assert st.demand_rps == pytest.approx(45.0)
    assert st.slo_violating_rps > 0


# ------------------------------------------------------------------ plan documents


def _plan_doc() -> dict[str, Any]:
    s = tiny()
    plan = feasible_plan(s)
    doc: dict[str, Any] = json.loads(json.dumps(plan_document(plan, evaluate_plan(s, plan))))
    return doc


def test_plan_document_round_trips() -> None:
    s = tiny()
    plan = feasible_plan(s)
    doc = _plan_doc()
    assert doc["feasible"] is True and doc["violations"] == []
    assert doc["cost"]["total"] == pytest.approx(HORIZON * (L40S_PRICE * 2 + A100_PRICE))
    assert plan_from_document(doc) == plan


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["deployments"][0].pop("replicas"), "deployments[0].replicas"),
        (lambda d: d["deployments"][1].pop("model"), "deployments[1].model"),
        (lambda d: d["routing"][0].pop("fraction"), "routing[0].fraction"),
        (lambda d: d["routing"][1].pop("deployment"), "routing[1].deployment"),
        (lambda d: _set(d, ("routing", 0, "fraction"), 1.5), "routing[0].fraction"),
        (lambda d: _set(d, ("routing", 1, "fraction"), -0.1), "routing[1].fraction"),
        (lambda d: _set(d, ("routing", 0, "fraction"), float("nan")), "routing[0].fraction"),
        (lambda d: _set(d, ("routing", 0, "fraction"), "1"), "routing[0].fraction"),
        (lambda d: _set(d, ("deployments", 0, "replicas"), 1.5), "deployments[0].replicas"),
        (lambda d: _set(d, ("deployments", 0, "replicas"), True), "deployments[0].replicas"),
        (lambda d: _set(d, ("deployments", 1, "tp"), "2"), "deployments[1].tp"),
        (lambda d: _set(d, ("deployments", 0, "gpu"), ""), "deployments[0].gpu"),
        (lambda d: _set(d, ("deployments", 0, "id"), "something-else"), "deployments[0].id"),
        (lambda d: d["deployments"].append(dict(d["deployments"][0])), "deployments"),
        (lambda d: _set(d, ("deployments", 0, "replicas"), -1), "deployments[0]"),
        (lambda d: _set(d, ("deployments", 0, "tp"), 0), "deployments[0]"),
        (lambda d: d["unmet"].append({"query_type": "chat", "fraction": 2.0}), "unmet[0].fraction"),
        (lambda d: d["unmet"].append({"fraction": 0.1}), "unmet[0].query_type"),
    ],
)
def test_plan_from_document_rejects_malformed_plans(mutate: Any, field: str) -> None:
    doc = _plan_doc()
    mutate(doc)
    with pytest.raises(PlanFormatError) as info:
        plan_from_document(doc)
    assert info.value.field == field


def test_a_solver_overshoot_of_a_fraction_is_read_and_written_as_one() -> None:
    """A route at 1 + 1e-12 (a solver's rounding) froze a live service: the plan was
    published, then refused as the warm start of every re-plan. Plans are written
    within [0, 1], and a stored overshoot within the tolerance reads as 1."""
    plan = Plan.build(
        [dep(L40S, "bf16", 1)], [Route("chat", did(L40S, "bf16"), 1.0 + 1e-12)], {"code": 1 + 1e-12}
    )
    assert plan.routing[0].fraction == 1.0 and plan.unmet["code"] == 1.0
    doc = _plan_doc()
    _set(doc, ("routing", 0, "fraction"), 1.0 + 1e-12)
    _set(doc, ("routing", 1, "fraction"), -1e-13)
    read = plan_from_document(doc)
    assert read.routing[0].fraction == 1.0 and read.routing[1].fraction == 0.0


def test_plan_from_document_rejects_a_non_object() -> None:
    with pytest.raises(PlanFormatError) as info:
        plan_from_document([])  # type: ignore[arg-type]
    assert info.value.field == "plan"


def test_plan_from_document_ignores_outputs_and_accepts_empty_plan() -> None:
    doc = _plan_doc()
    doc["cost"] = {"total": -1}
    doc["feasible"] = False
    doc["deployments"][0]["utilization"] = 99
    assert plan_from_document(doc) == feasible_plan(tiny())
    empty = plan_from_document({"deployments": []})
    assert empty.deployments == () and empty.routing == () and dict(empty.unmet) == {}
    # ... but a document without deployments is not a plan (a scenario, say)
    with pytest.raises(PlanFormatError, match="is required"):
        plan_from_document({})


def test_empty_plan_is_evaluated_not_raised() -> None:
    s = tiny()
    ev = evaluate_plan(s, Plan())
    assert kinds(ev) == {"coverage", "unmet_cap"}
    assert {v.subject for v in ev.violations} == {"chat", "code"}
    # nothing is served: every request is priced as unmet, nothing else costs
    full = sum(3600 * s.policy.horizon_h * q.unmet_penalty * q.arrival_rate for q in s.query_types)
    assert ev.objective == pytest.approx(full) and ev.cost.rental == 0.0
