"""Unit costs of the SPEC §1.5 objective, in $ per horizon: the one place each rule
is written. The candidate table (and through it GH, AGH and the MILP), the
evaluator and the stress evaluation all price with these functions, so a plan's
cost cannot depend on who computed it.

* rental: `horizon_h · price_per_hour(g) · gpus` per replica;
* storage: `weight_gb · storage_price_per_gb_h · horizon_h` per active deployment
  (each deployment keeps its own copy of its weights);
* unmet penalty: `3600 · horizon_h · φ_i · λ_i` for leaving all of type i unserved;
* delay penalty: `3600 · horizon_h · ρ_i · λ_i · delay` for routing all of type i
  where a request takes `delay` seconds;
* change cost: `w · change_cost_per_gpu · Σ_d gpus_per_replica_d · |r_d − r_d^live|`
  against the live plan only (a deployment the live plan runs that the new plan
  cannot, counts as fully stopped), with the weight `w = 3600 · horizon_h /
  change_payback_s` (`change_weight`; the payback defaults to 3600 s, and with
  `change_payback_s: null` it is `replan_interval_s`).

Why the weight: rental and penalties are priced over the horizon, while a change is
paid once. A change must pay for itself in rental saved within `change_payback_s`:
comparing rental over the payback with the one-off cost, and scaling to the
horizon, gives the weight. (With a payback of `3600 · horizon_h` the weight is 1.)
Why not one re-plan interval (5 minutes), the life of one plan: the saving of a
swap outlives the plan that makes it — the next plans keep the cheaper fleet — so
the interval undervalues every saving 12-fold. In the closed-loop study
(docs/results.md §2) a warm start from a fleet holding an H100 kept it all day
because no single swap to cheaper GPUs paid within 5 minutes; a 1-hour payback cut
the code day's cost from $137 to $107 and the conversation day's from $284 to $193
(churn 36 → 43 and 12 → 51 GPUs a day, well under the old loop's).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.model.domain import Policy, Scenario
from app.engine.plan.plan import Deployment, Plan

FloatArray = NDArray[np.float64]

SECONDS_PER_HOUR = 3600.0


def request_seconds(scenario: Scenario) -> float:
    """Seconds in the horizon: requests over the horizon per req/s of demand."""
    return SECONDS_PER_HOUR * scenario.policy.horizon_h


def replica_cost(scenario: Scenario, gpu_idx: ArrayLike, gpus_per_replica: ArrayLike) -> FloatArray:
    """Rental $ per horizon of one replica of each candidate."""
    price = np.array([g.price_per_hour for g in scenario.gpus], dtype=np.float64)
    gpr = np.asarray(gpus_per_replica, dtype=np.float64)
    return scenario.policy.horizon_h * price[np.asarray(gpu_idx, dtype=np.int64)] * gpr


def weight_gb(scenario: Scenario, model_idx: ArrayLike, precision_idx: ArrayLike) -> FloatArray:
    """GB of weights of each candidate (model parameters at its precision)."""
    params = np.array([m.params_b for m in scenario.models], dtype=np.float64)
    bpw = np.array([p.bytes_per_weight for p in scenario.precisions], dtype=np.float64)
    return (
        params[np.asarray(model_idx, dtype=np.int64)]
        * bpw[np.asarray(precision_idx, dtype=np.int64)]
    )


def storage_cost(scenario: Scenario, weights_gb: ArrayLike) -> FloatArray:
    """$ per horizon to keep each deployment's weights in storage."""
    pol = scenario.policy
    return np.asarray(weights_gb, dtype=np.float64) * pol.storage_price_per_gb_h * pol.horizon_h


def demand(scenario: Scenario, demand_factor: float = 1.0) -> FloatArray:
    """(I,) arrival rate of each query type, req/s."""
    return np.array([q.arrival_rate for q in scenario.query_types]) * demand_factor


def unmet_cost(scenario: Scenario, demand_factor: float = 1.0) -> FloatArray:
    """(I,) $ per horizon for leaving the whole of type i unserved."""
    phi = np.array([q.unmet_penalty for q in scenario.query_types])
    return request_seconds(scenario) * phi * demand(scenario, demand_factor)


def delay_cost(scenario: Scenario, delay_s: FloatArray, demand_factor: float = 1.0) -> FloatArray:
    """(I, K) $ per horizon of delay penalty for routing the whole of type i where a
    request takes `delay_s[i, k]` seconds."""
    rho = np.array([q.delay_penalty or 0.0 for q in scenario.query_types])
    per = request_seconds(scenario) * rho * demand(scenario, demand_factor)
    return per[:, None] * delay_s


def change_weight(policy: Policy) -> float:
    """How many times the one-off change cost counts against rental per horizon."""
    payback = policy.change_payback_s or policy.replan_interval_s  # null: one interval
    return SECONDS_PER_HOUR * policy.horizon_h / payback


def change_cost_per_gpu(policy: Policy) -> float:
    """$ per horizon charged per GPU started or stopped (weighted, see module)."""
    return policy.change_cost_per_gpu * change_weight(policy)


def change_cost_of(
    cost_per_gpu: float, gpus_per_replica: ArrayLike, replicas: ArrayLike, live: ArrayLike
) -> float:
    """$ of starting and stopping GPUs: `cost_per_gpu · Σ gpr · |r − r_live|`."""
    if cost_per_gpu <= 0:
        return 0.0
    gpr = np.asarray(gpus_per_replica, dtype=np.float64)
    delta = np.abs(np.asarray(replicas, dtype=np.float64) - np.asarray(live, dtype=np.float64))
    return float(cost_per_gpu * (gpr * delta).sum())


def change_cost(scenario: Scenario, plan: Plan, current: Plan | None) -> float:
    """$ for GPUs started or stopped per deployment relative to the live plan (0
    without a live plan)."""
    if current is None:
        return 0.0
    now, before = plan.deployment_map(), current.deployment_map()
    ids = sorted(now.keys() | before.keys())
    deps: Iterable[Deployment] = (now.get(i) or before[i] for i in ids)
    gpr = [d.tp * d.pp for d in deps]
    return change_cost_of(
        change_cost_per_gpu(scenario.policy),
        gpr,
        [now[i].replicas if i in now else 0 for i in ids],
        [before[i].replicas if i in before else 0 for i in ids],
    )
