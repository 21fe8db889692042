"""Deployment candidates and their per-(query type, candidate) constants (SPEC §1.2).

A candidate is d = (model j, GPU g, precision p, TP n, PP m). `candidate_table`
enumerates every candidate the scenario allows and computes, for all query types
at once, `B*`, `μ`, error, delay, TTFT and TPOT as (I, D) arrays. Every solver (GH,
AGH, the MILP, the baselines) reads this one table; the evaluator recomputes the
same constants for a plan's deployments with `pair_constants`, the same code path.

Each candidate is predicted with the profile of its GPU type's serving engine
(`GPU.engine`, else `Policy.engine`) unless a `profile` is given for all, and, with
a `Calibration`, with its (engine, GPU, model, precision) correction applied inside
the B*/μ computation: the SLOs are checked on the corrected latencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from app.engine.model.domain import Scenario
from app.engine.perf.calibration import Calibration
from app.engine.perf.model import (
    hardware_arrays,
    kv_capacity_tokens,
    throughput_rps,
    tpot_s,
    ttft_s,
)
from app.engine.perf.profiles import EngineProfile, engine_profile
from app.engine.perf.slo_batch import max_slo_batch
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

    def select(self, keep: BoolArray) -> PairConstants:
        """The constants of the candidates where `keep` (K,) is true."""
        return PairConstants(
            bstar=self.bstar[:, keep],
            mu=self.mu[:, keep],
            error=self.error[:, keep],
            ttft=self.ttft[:, keep],
            tpot=self.tpot[:, keep],
            delay=self.delay[:, keep],
            fits=self.fits[keep],
        )


def candidate_engines(scenario: Scenario, gpu_idx: IntArray) -> list[str]:
    """The serving engine of each candidate: its GPU type's, else the policy's."""
    default = scenario.policy.engine
    by_gpu = [g.engine or default for g in scenario.gpus]
    return [by_gpu[int(k)] for k in gpu_idx]


def _correction_factors(
    scenario: Scenario,
    engines: list[str],
    model_idx: IntArray,
    gpu_idx: IntArray,
    prec_idx: IntArray,
    calibration: Calibration | None,
) -> tuple[FloatArray, FloatArray]:
    """(K,) TTFT and TPOT factors of each candidate's (engine, GPU, model, precision)."""
    k = len(engines)
    if calibration is None:
        return np.ones(k), np.ones(k)
    s = scenario
    memo: dict[tuple[str, int, int, int], tuple[float, float]] = {}
    c_t, c_p = np.empty(k), np.empty(k)
    for i, (e, j, g, p) in enumerate(zip(engines, model_idx, gpu_idx, prec_idx, strict=True)):
        key = (e, int(g), int(j), int(p))
        if key not in memo:
            c = calibration.correction_for(
                e, s.gpus[key[1]].id, s.models[key[2]].id, s.precisions[key[3]].id
            )
            memo[key] = (c.ttft_factor, c.tpot_factor)
        c_t[i], c_p[i] = memo[key]
    return c_t, c_p


def pair_constants(
    scenario: Scenario,
    model_idx: IntArray,
    gpu_idx: IntArray,
    prec_idx: IntArray,
    tp: IntArray,
    pp: IntArray,
    profile: EngineProfile | None = None,
    delay_factor: float = 1.0,
    error_factor: float = 1.0,
    calibration: Calibration | None = None,
) -> PairConstants:
    """Constants for K candidates given element-wise, against every query type.

    Each candidate uses its engine's profile (`candidate_engines`), or `profile`
    for all when given (an explicit override, for benchmarks). `calibration`
    multiplies each candidate's predicted TTFT and TPOT by its correction, and
    `delay_factor` every predicted latency (stress evaluation: the hardware turns
    out slower than modelled); both enter B* (the SLOs hold for the corrected
    latencies) and μ. `error_factor` multiplies error rates."""
    s = scenario
    calibration = calibration if calibration is not None else s.calibration
    model_idx, gpu_idx, prec_idx = (
        np.asarray(x, dtype=np.int64) for x in (model_idx, gpu_idx, prec_idx)
    )
    tp_a, pp_a = np.asarray(tp, dtype=np.int64), np.asarray(pp, dtype=np.int64)
    engines = candidate_engines(s, gpu_idx)
    c_t, c_p = _correction_factors(s, engines, model_idx, gpu_idx, prec_idx, calibration)
    c_t *= delay_factor
    c_p *= delay_factor
    qts = s.query_types
    h = np.array([q.input_tokens for q in qts])[:, None]
    f = np.array([q.output_tokens for q in qts])[:, None]
    ttft_slo = np.array([q.ttft_s for q in qts])[:, None]
    tpot_slo = np.array([q.tpot_s for q in qts])[:, None]
    e2e_slo = np.array([q.e2e_s if q.e2e_s else np.inf for q in qts])[:, None]
    K = len(model_idx)
    bstar = np.zeros((len(qts), K), dtype=np.int64)
    t1, t2, mu = (np.zeros((len(qts), K)) for _ in range(3))
    fits = np.zeros(K, dtype=bool)
    groups: dict[str, list[int]] = {}
    for k, e in enumerate(engines):
        groups.setdefault("" if profile is not None else e, []).append(k)
    for engine, cols in groups.items():
        prof = profile if profile is not None else engine_profile(engine)
        c = np.array(cols, dtype=np.int64)
        hw = hardware_arrays(
            [s.models[k] for k in model_idx[c]],
            [s.gpus[k] for k in gpu_idx[c]],
            [s.precisions[k] for k in prec_idx[c]],
            tp_a[c],
            pp_a[c],
        )
        b_g = max_slo_batch(hw, h, f, ttft_slo, tpot_slo, e2e_slo, prof, c_t[c], c_p[c])
        b_eval = np.maximum(b_g, 1).astype(np.float64)
        t1_g = ttft_s(hw, h, b_eval, prof, f=f) * c_t[c]
        t2_g = tpot_s(hw, h, f, b_eval, prof) * c_p[c]
        mu[:, c] = np.where(b_g >= 1, throughput_rps(t1_g, t2_g, f, b_eval, hw, prof), 0.0)
        bstar[:, c], t1[:, c], t2[:, c] = b_g, t1_g, t2_g
        fits[c] = kv_capacity_tokens(hw, prof) > 0
    # Error rate per (type, model of the scenario), then per candidate via its model.
    rate = np.full((len(qts), len(s.models)), np.inf)
    for j, mo in enumerate(s.models):
        for i, q in enumerate(qts):
            r = mo.error_rate_for(q)
            if r is not None:
                rate[i, j] = r
    mult = np.array([p.error_multiplier for p in s.precisions])[prec_idx]
    raw = rate[:, model_idx]
    # unknown quality (inf) stays inf: such a pair is never feasible
    err = np.where(np.isfinite(raw), np.minimum(1.0, raw * (mult * error_factor)[None, :]), np.inf)
    # Models that cannot hold the prompt plus output in their context never serve it.
    ctx = np.array([mo.max_context for mo in s.models], dtype=np.float64)[None, model_idx]
    bstar = np.where(h + f <= ctx, bstar, 0)
    mu = np.where(bstar >= 1, mu, 0.0)
    return PairConstants(
        bstar=bstar, mu=mu, error=err, ttft=t1, tpot=t2, delay=t1 + f * t2, fits=fits
    )


@dataclass(frozen=True)
class CandidateTable:
    """All candidates of a scenario and their constants.

    Candidate-level arrays have shape (D,); pair-level arrays (I, D); type-level (I,).
    Only candidates that fit in memory, can be rented (tp·pp <= available) and are
    feasible for at least one query type are kept."""

    scenario: Scenario
    profile: EngineProfile | None  # the override used for all candidates; None: per engine
    model: IntArray
    gpu: IntArray
    precision: IntArray
    tp: IntArray
    pp: IntArray
    pairs: PairConstants
    calibration: Calibration | None = None

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
    def engines(self) -> list[str]:
        """Each candidate's serving engine (from the scenario, even under a
        `profile` override)."""
        return candidate_engines(self.scenario, self.gpu)

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
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 off the feasible pairs
            return np.where(self.feasible, self.arrival[:, None] / self.pairs.mu, np.inf)


def enumerate_candidates(scenario: Scenario) -> tuple[IntArray, ...]:
    """Every (model, gpu, precision, tp, pp) the scenario allows on structural grounds:
    precision supported on the GPU, TP within a node and sharding the model's heads
    (`Model.tp_problem`), the replica rentable."""
    pol = scenario.policy
    # the models each TP degree can shard, decided once (not per GPU and precision)
    shardable = {
        n: [j for j, mo in enumerate(scenario.models) if mo.tp_problem(n) is None]
        for n in pol.tp_options
    }
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
                    rows.extend((j, g, p, n, m) for j in shardable[n])
    arr = np.array(rows, dtype=np.int64).reshape(-1, 5)
    return tuple(arr[:, k] for k in range(5))


def candidate_table(
    scenario: Scenario,
    profile: EngineProfile | None = None,
    calibration: Calibration | None = None,
) -> CandidateTable:
    """Build the table of useful candidates for a scenario: each candidate with its
    engine's profile (or `profile` for all), corrected by `calibration` if given."""
    calibration = calibration if calibration is not None else scenario.calibration
    j, g, p, n, m = enumerate_candidates(scenario)
    pairs = pair_constants(scenario, j, g, p, n, m, profile, calibration=calibration)
    keep = pairs.fits & pairs.feasible.any(axis=0)
    return CandidateTable(
        scenario=scenario,
        profile=profile,
        calibration=calibration,
        model=j[keep],
        gpu=g[keep],
        precision=p[keep],
        tp=n[keep],
        pp=m[keep],
        pairs=pairs.select(keep),
    )
