"""Stress evaluation: the plan, fixed, meets a world that is slower, less accurate
or busier than modelled (`evaluate_plan(..., delay_factor, error_factor,
demand_factor)`).

Semantics (our choice; the paper does not define them precisely):
* latencies x delay_factor: each pair's B* and μ are recomputed against the SLOs
  with inflated latencies; a pair with no feasible batch any more violates the
  SLO for all its traffic;
* a deployment is run at full capacity under stress (headroom is there to be
  used): if its load exceeds r·μ', the excess share 1 − 1/L of its traffic
  misses the SLO;
* errors x error_factor: the type's traffic-weighted error is recomputed; the
  requests answered wrongly *beyond* its `max_error_rate` (served traffic x
  max(0, weighted error − bound)) count as accuracy-violating. (Counting every
  request of a type whose bound is exceeded would call a plan that sits exactly
  on its bound 100% violating at 1.01x — not a useful measure.)
* realised cost = rental + storage + change + planned unmet x penalty + every
  violating request x its type's unmet penalty + delay penalty at inflated delays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from app.engine.model.domain import Scenario
from app.engine.plan import costs
from app.engine.plan.candidates import PairConstants

if TYPE_CHECKING:  # the evaluator imports this module; its types only for hints
    from app.engine.plan.evaluation import CostBreakdown

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class StressReport:
    delay_factor: float
    error_factor: float
    demand_factor: float
    demand_rps: float
    slo_violating_rps: float
    accuracy_violating_rps: float
    unmet_rps: float
    realised_cost: float

    @property
    def slo_violation_share(self) -> float:
        return self.slo_violating_rps / self.demand_rps if self.demand_rps > 0 else 0.0

    @property
    def accuracy_violation_share(self) -> float:
        return self.accuracy_violating_rps / self.demand_rps if self.demand_rps > 0 else 0.0

    @property
    def violation_share(self) -> float:
        """Share of demand served outside its SLO or accuracy bound (a request that
        misses both counts once, up to the served total)."""
        if self.demand_rps <= 0:
            return 0.0
        served = self.demand_rps - self.unmet_rps
        bad = min(served, self.slo_violating_rps + self.accuracy_violating_rps)
        return bad / self.demand_rps

    def to_document(self) -> dict[str, float]:
        d = asdict(self)
        d["slo_violation_share"] = self.slo_violation_share
        d["accuracy_violation_share"] = self.accuracy_violation_share
        d["violation_share"] = self.violation_share
        return d


def stress_report(
    scenario: Scenario,
    pc: PairConstants | None,
    x: FloatArray,
    unserved: FloatArray,
    reps: FloatArray,
    cost: CostBreakdown,
    delay_factor: float,
    error_factor: float,
    demand_factor: float,
) -> StressReport:
    """The stress figures of a plan's decisions (`x` (I, K), `unserved` (I,),
    `reps` (K,)) given its pair constants `pc` recomputed at the inflated
    latencies and errors (None when the plan has no deployment)."""
    lam = costs.demand(scenario, demand_factor)
    eps = np.array([q.max_error_rate for q in scenario.query_types])
    traffic = lam[:, None] * x  # req/s of type i on deployment k
    slo_bad = np.zeros_like(traffic)
    acc_bad = np.zeros_like(traffic)
    delay_pen = 0.0
    if pc is not None:
        ok = pc.feasible
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.where(ok & (traffic > 0), traffic / pc.mu, 0.0)
            load = need.sum(axis=0)
            overload = np.where(load > reps, 1.0 - reps / load, 0.0)
        slo_bad = np.where(ok, traffic * overload[None, :], traffic)
        served = traffic.sum(axis=1)
        err = np.where(np.isfinite(pc.error), pc.error, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_err = np.where(served > 0, (err * traffic).sum(axis=1) / served, 0.0)
            excess = np.maximum(0.0, mean_err - eps) * served
            # spread over the type's deployments in proportion to traffic (per-type
            # totals are what is reported)
            acc_bad = (
                np.where(served[:, None] > 0, traffic / served[:, None], 0.0) * excess[:, None]
            )
        delay_pen = float(
            (costs.delay_cost(scenario, np.where(ok, pc.delay, 0.0), demand_factor) * x).sum()
        )
    unmet_rps = float((lam * unserved).sum())
    slo_v, acc_v = float(slo_bad.sum()), float(acc_bad.sum())
    bad_share = np.minimum(slo_bad.sum(axis=1) + acc_bad.sum(axis=1), traffic.sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        bad_share = np.where(lam > 0, bad_share / lam, 0.0)
    penalties = float(costs.unmet_cost(scenario, demand_factor).dot(unserved + bad_share))
    realised = cost.rental + cost.storage + cost.change_cost + penalties + delay_pen
    return StressReport(
        delay_factor,
        error_factor,
        demand_factor,
        float(lam.sum()),
        slo_v,
        acc_v,
        unmet_rps,
        realised,
    )
