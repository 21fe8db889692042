"""Deployment candidates and their per-(query type, candidate) constants (SPEC §1.2).

A candidate is d = (model j, GPU g, precision p, TP n, PP m). `candidate_table`
enumerates every candidate the scenario allows and computes, for all query types
at once, `B*`, `μ`, error, delay, TTFT and TPOT as (I, D) arrays. Every solver (GH,
AGH, the MILP, the baselines) reads this one table; the evaluator recomputes the
same constants for a plan's deployments with `pair_constants`, the same code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from app.engine.model.domain import Scenario
from app.engine.perf.model import (
    DEFAULT_PROFILE,
    EngineProfile,
    hardware_arrays,
    kv_capacity_tokens,
    max_slo_batch,
    throughput_rps,
    tpot_s,
    ttft_s,
)
from app.engine.plan import costs
from app.engine.plan.plan import Deployment, deployment_id

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class PairConstants:
    """Per-(query type, candidate) constants, arrays of shape (I, K)."""

    bstar: IntArray  # max concurrency within SLO and KV (0: infeasible)
    mu: FloatArray  # requests/s one replica sustains at B*
    error: FloatArray  # error rate incl. precision multiplier (inf: no known quality)
    ttft: FloatArray  # at B* (at B = 1 where B* = 0)
    tpot: FloatArray
    delay: FloatArray  # TTFT + f·TPOT at B*
    fits: BoolArray  # (K,) weights + runtime fit in memory

    @property
    def feasible(self) -> BoolArray:
        return (self.bstar >= 1) & np.isfinite(self.error) & (self.mu > 0)


def pair_constants(
    scenario: Scenario,
    model_idx: IntArray,
    gpu_idx: IntArray,
    prec_idx: IntArray,
    tp: IntArray,
    pp: IntArray,
    profile: EngineProfile = DEFAULT_PROFILE,
    delay_factor: float = 1.0,
    error_factor: float = 1.0,
) -> PairConstants:
    """Constants for K candidates given element-wise, against every query type.

    `delay_factor` multiplies every predicted latency (stress evaluation: the
    hardware turns out slower than modelled); `error_factor` multiplies error rates."""
    s = scenario
    models = [s.models[k] for k in model_idx]
    gpus = [s.gpus[k] for k in gpu_idx]
    precs = [s.precisions[k] for k in prec_idx]
    hw = hardware_arrays(models, gpus, precs, tp, pp)
    qts = s.query_types
    h = np.array([q.input_tokens for q in qts])[:, None]
    f = np.array([q.output_tokens for q in qts])[:, None]
    ttft_slo = np.array([q.ttft_s for q in qts])[:, None] / delay_factor
    tpot_slo = np.array([q.tpot_s for q in qts])[:, None] / delay_factor
    e2e_slo = np.array([q.e2e_s if q.e2e_s else np.inf for q in qts])[:, None] / delay_factor
    bstar = max_slo_batch(hw, h, f, ttft_slo, tpot_slo, e2e_slo, profile)
    b_eval = np.maximum(bstar, 1).astype(np.float64)
    t1 = ttft_s(hw, h, b_eval, profile, f=f)
    t2 = tpot_s(hw, h, f, b_eval, profile)
    mu = np.where(bstar >= 1, throughput_rps(t1, t2, f, b_eval, hw, profile), 0.0)
    t1 = t1 * delay_factor
    t2 = t2 * delay_factor
    mu = mu / delay_factor
    # Error rate per (type, model of the scenario), then per candidate via its model.
    rate = np.full((len(qts), len(s.models)), np.inf)
    for j, mo in enumerate(s.models):
        for i, q in enumerate(qts):
            r = mo.error_rate_for(q)
            if r is not None:
                rate[i, j] = r
    mult = np.array([p.error_multiplier for p in s.precisions])[np.asarray(prec_idx)]
    raw = rate[:, np.asarray(model_idx)]
    # unknown quality (inf) stays inf: such a pair is never feasible
    err = np.where(np.isfinite(raw), np.minimum(1.0, raw * (mult * error_factor)[None, :]), np.inf)
    # Models that cannot hold the prompt plus output in their context never serve it.
    ctx = np.array([mo.max_context for mo in s.models], dtype=np.float64)[None, model_idx]
    bstar = np.where(h + f <= ctx, bstar, 0)
    mu = np.where(bstar >= 1, mu, 0.0)
    return PairConstants(
        bstar=bstar,
        mu=mu,
        error=err,
        ttft=t1,
        tpot=t2,
        delay=t1 + f * t2,
        fits=kv_capacity_tokens(hw, profile) > 0,
    )


@dataclass(frozen=True)
class CandidateTable:
    """All candidates of a scenario and their constants.

    Candidate-level arrays have shape (D,); pair-level arrays (I, D); type-level (I,).
    Only candidates that fit in memory, can be rented (tp·pp <= available) and are
    feasible for at least one query type are kept."""

    scenario: Scenario
    profile: EngineProfile
    model: IntArray
    gpu: IntArray
    precision: IntArray
    tp: IntArray
    pp: IntArray
    pairs: PairConstants

    # ---- candidate-level -------------------------------------------------
    @cached_property
    def ids(self) -> list[str]:
        s = self.scenario
        return [
            deployment_id(s.models[j].id, s.gpus[g].id, s.precisions[p].id, int(n), int(m))
            for j, g, p, n, m in zip(
                self.model, self.gpu, self.precision, self.tp, self.pp, strict=True
            )
        ]

    @cached_property
    def index(self) -> dict[str, int]:
        return {d: k for k, d in enumerate(self.ids)}

    def deployment(self, d: int, replicas: int) -> Deployment:
        """Candidate `d` as a plan deployment with `replicas` replicas (the one place
        a table index becomes a deployment)."""
        s = self.scenario
        return Deployment(
            s.models[self.model[d]].id,
            s.gpus[self.gpu[d]].id,
            s.precisions[self.precision[d]].id,
            int(self.tp[d]),
            int(self.pp[d]),
            int(replicas),
        )

    @property
    def size(self) -> int:
        return len(self.model)

    @cached_property
    def gpus_per_replica(self) -> IntArray:
        return self.tp * self.pp

    @cached_property
    def price_per_gpu_hour(self) -> FloatArray:
        return np.array([self.scenario.gpus[g].price_per_hour for g in self.gpu])

    @cached_property
    def replica_cost(self) -> FloatArray:
        """Rental $ per horizon for one replica."""
        return costs.replica_cost(self.scenario, self.gpu, self.gpus_per_replica)

    @cached_property
    def weight_gb(self) -> FloatArray:
        return costs.weight_gb(self.scenario, self.model, self.precision)

    @cached_property
    def storage_cost(self) -> FloatArray:
        """$ per horizon to keep one deployment's weights in storage."""
        return costs.storage_cost(self.scenario, self.weight_gb)

    @cached_property
    def gpu_available(self) -> IntArray:
        return np.array([g.available for g in self.scenario.gpus], dtype=np.int64)

    @cached_property
    def max_replicas(self) -> IntArray:
        return self.gpu_available[self.gpu] // self.gpus_per_replica

    @cached_property
    def tp_upgrade(self) -> IntArray:
        """For each candidate, the index of the same (model, gpu, precision, pp)
        with twice the TP, or -1 (GH's mechanism M3)."""
        key = {
            (int(j), int(g), int(p), int(n), int(m)): k
            for k, (j, g, p, n, m) in enumerate(
                zip(self.model, self.gpu, self.precision, self.tp, self.pp, strict=True)
            )
        }
        out = np.full(self.size, -1, dtype=np.int64)
        for (j, g, p, n, m), k in key.items():
            out[k] = key.get((j, g, p, 2 * n, m), -1)
        return out

    # ---- type-level -------------------------------------------------------
    @cached_property
    def arrival(self) -> FloatArray:
        return costs.demand(self.scenario)

    @cached_property
    def max_error(self) -> FloatArray:
        return np.array([q.max_error_rate for q in self.scenario.query_types])

    @cached_property
    def max_unmet(self) -> FloatArray:
        return np.array([q.max_unmet_fraction for q in self.scenario.query_types])

    @cached_property
    def unmet_cost(self) -> FloatArray:
        """$ per horizon for leaving the whole of type i unmet."""
        return costs.unmet_cost(self.scenario)

    @cached_property
    def delay_cost(self) -> FloatArray:
        """(I, D): $ per horizon of delay penalty for routing all of type i to d."""
        return costs.delay_cost(self.scenario, self.pairs.delay)

    @cached_property
    def feasible(self) -> BoolArray:
        return self.pairs.feasible

    @cached_property
    def load(self) -> FloatArray:
        """(I, D): replicas' worth of capacity type i needs on d if routed whole
        (λ_i / μ_id, inf where infeasible). Capacity: Σ_i load·x ≤ max_util·r."""
        with np.errstate(divide="ignore"):
            return np.where(self.feasible, self.arrival[:, None] / self.pairs.mu, np.inf)


def enumerate_candidates(scenario: Scenario) -> tuple[IntArray, ...]:
    """Every (model, gpu, precision, tp, pp) the scenario allows on structural grounds:
    precision supported on the GPU, TP within a node, the replica rentable."""
    pol = scenario.policy
    rows: list[tuple[int, int, int, int, int]] = []
    for g, gpu in enumerate(scenario.gpus):
        for p, prec in enumerate(scenario.precisions):
            if not prec.supported_on(gpu):
                continue
            for n in pol.tp_options:
                if n > gpu.gpus_per_node:
                    continue
                for m in pol.pp_options:
                    if n * m > gpu.available:
                        continue
                    for j in range(len(scenario.models)):
                        rows.append((j, g, p, n, m))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 5)
    return tuple(arr[:, k] for k in range(5))


def candidate_table(scenario: Scenario, profile: EngineProfile = DEFAULT_PROFILE) -> CandidateTable:
    """Build the table of useful candidates for a scenario."""
    j, g, p, n, m = enumerate_candidates(scenario)
    pairs = pair_constants(scenario, j, g, p, n, m, profile)
    keep = pairs.fits & pairs.feasible.any(axis=0)
    return CandidateTable(
        scenario=scenario,
        profile=profile,
        model=j[keep],
        gpu=g[keep],
        precision=p[keep],
        tp=n[keep],
        pp=m[keep],
        pairs=PairConstants(
            bstar=pairs.bstar[:, keep],
            mu=pairs.mu[:, keep],
            error=pairs.error[:, keep],
            ttft=pairs.ttft[:, keep],
            tpot=pairs.tpot[:, keep],
            delay=pairs.delay[:, keep],
            fits=pairs.fits[keep],
        ),
    )
