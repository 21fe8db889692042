"""Exact polish: MILPs inside the solve's time budget, started from the
heuristic's best plan (SPEC §4.1 "Quality in the budget").

Stages, each solved by a solver process (`milp.backends`) from the best plan so
far as its MIP start, each stage's answer kept only when it ranks better
(feasibility first, then cost) — so the polish never returns a plan worse than
its start:

1. *restricted* MILPs over a neighbourhood of candidates (`neighbourhood`): the
   candidates the best plan uses (later stages: also the other elite plans'
   and their TP/PP and precision variants), and per query type the `k`
   cheapest candidates per unit of demand (overall, among those that meet the
   type's error bound alone, and by rental alone when a budget is set). Small
   models take one stage (k = 3), large ones climb `K_LADDER`, each
   neighbourhood built around the best plan so far (a MILP-based large
   neighbourhood search);
2. the *full* MILP, once the neighbourhood would hold most candidates anyway,
   at once when the full model is tiny, after k = 3 when it is small
   (`FULL_PAIRS`), else after the ladder when it fits the time left — or,
   when it does not, the full LP relaxation for a bound.

The solver is HiGHS in a worker process started with the solve (`HybridRunner`:
CBC for restricted stages while that worker imports, handing over to HiGHS the
moment it is ready), or CBC alone (`CbcRunner`) when highspy is not installed.

Bounds. A restricted model's optimum is a plan of the full problem, but its
dual bound is not a bound of the full problem and is never reported. The bound
reported (`PolishResult.bound`) is always valid for the full problem: the dual
bound of the full MILP (`bound_source` "milp", when the full stage ran, even if
stopped by the deadline), else the optimum of the full LP relaxation ("lp",
solved when time remains after the restricted stages), else none. When that
bound is within the relative gap of the returned plan's cost, the plan is
proven optimal (`proven_optimal`; AGH's termination "converged").

Deterministic mode (`max_nodes`): each stage is limited by a node count instead
of the clock, and a stage the deadline or the stop signal cuts short is
discarded (and ends the polish): the result then depends on the seed and the
limits only, whenever the budget is large enough for the stages to finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from app.engine.plan.candidates import CandidateTable
from app.engine.plan.plan import Plan
from app.engine.solvers.milp.arrays import (
    MilpArrays,
    build_arrays,
    start_vector,
    state_from_values,
)
from app.engine.solvers.milp.backends.highs_session import HighsSession, highs_available
from app.engine.solvers.milp.backends.stage import (
    CbcRunner,
    StageLimits,
    StageOutcome,
    StopSignal,
)
from app.engine.solvers.search import better
from app.engine.solvers.state import AllocationState

# Neighbourhood sizes tried in turn on large models (candidates per query type
# and criterion); each is built around the best plan so far.
K_LADDER = (1, 2, 3, 6, 12, 24)
# Restricted stages stop at this relative gap (their proofs are not proofs of the
# full problem: time is better spent on the next stage).
RESTRICTED_GAP = 1e-3
# Full models up to this many (type, candidate) pairs go straight after the
# first restricted stage (HiGHS solves them in well under a second here).
FULL_PAIRS = 8_000
# A neighbourhood holding this share of the candidates is the full model.
FULL_SHARE = 0.6
# Stages need at least this much time to be worth starting, seconds.
MIN_STAGE_S = 0.05
# Full LP relaxation for a bound: only when the remaining time exceeds this many
# seconds per 10,000 pairs (a measured HiGHS dual simplex rate, with margin).
LP_S_PER_10K_PAIRS = 0.25


class StageRunner(Protocol):
    def run(
        self, ma: MilpArrays, start: np.ndarray | None, limits: StageLimits
    ) -> StageOutcome: ...

    def ready_now(self) -> bool: ...

    def close(self) -> None: ...


def polish_backend(preferred: str | None) -> str:
    """The backend the polish uses: `preferred` if it can run, HiGHS when
    available (it is the faster here, see bench/results/compare.md), else CBC."""
    if preferred == "cbc":
        return "cbc"
    return "highs" if highs_available() else "cbc"


def open_runner(backend: str, deterministic: bool = False) -> StageRunner:
    """A stage runner; for HiGHS this starts its worker process at once, so call
    it early (the import runs while the heuristic searches). `deterministic`:
    HiGHS only, never CBC while it starts (which solver runs a stage must not
    depend on the machine's speed)."""
    if backend != "highs":
        return CbcRunner()
    return HighsSession() if deterministic else HybridRunner()


class HybridRunner:
    """HiGHS once its worker process has started; until then CBC for restricted
    stages: on a busy machine importing highspy can take a third of a 1 s
    budget, while CBC (a binary) starts in milliseconds. CBC is slower on these
    models, so the moment HiGHS is ready CBC is interrupted and HiGHS goes on
    from CBC's incumbent. The full model always waits for HiGHS (CBC is 5-10x
    slower on it, see bench/results/compare.md)."""

    def __init__(self) -> None:
        self.highs = HighsSession()
        self.cbc = CbcRunner()

    def ready_now(self) -> bool:
        return True

    def run(self, ma: MilpArrays, start: np.ndarray | None, limits: StageLimits) -> StageOutcome:
        if not ma.restricted or self.highs.ready_now():
            return replace(self.highs.run(ma, start, limits), solver="highs")
        # CBC until HiGHS is ready: then CBC is interrupted (it writes its
        # incumbent) and HiGHS goes on from the better of that and the start.
        handoff = _EitherStop(limits.stop, self.highs.ready_now)
        out = self.cbc.run(ma, start, replace(limits, stop=handoff))
        if out.status != "stopped" or (limits.stop is not None and limits.stop.is_set()):
            return replace(out, solver="cbc")
        nxt = out.values if out.values is not None else start
        return replace(self.highs.run(ma, nxt, limits), solver="cbc+highs")

    def close(self) -> None:
        self.highs.close()
        self.cbc.close()


class _EitherStop:
    """Set when the caller's stop is, or when `other()` says so."""

    def __init__(self, stop: StopSignal | None, other: Callable[[], bool]) -> None:
        self.stop = stop
        self.other = other

    def is_set(self) -> bool:
        return (self.stop is not None and self.stop.is_set()) or self.other()


@dataclass(frozen=True)
class StageReport:
    scope: str  # "k=3", "k=6", …, "full", "lp"
    candidates: int
    pairs: int
    status: str
    objective: float | None  # the stage's plan (state objective), None without one
    improved: bool
    wall_s: float
    recovered: bool = False
    solver: str = ""


@dataclass
class PolishResult:
    state: AllocationState
    bound: float | None = None  # valid for the full problem (see module docstring)
    bound_source: str | None = None  # "milp" | "lp" | None
    proven_optimal: bool = False  # the full MILP proved the returned plan optimal
    proven_infeasible: bool = False  # the full MILP proved no plan meets every constraint
    stopped: bool = False
    stages: list[StageReport] = field(default_factory=list)

    @property
    def improved(self) -> bool:
        return any(s.improved for s in self.stages)


def neighbourhood(
    table: CandidateTable, states: list[AllocationState], k: int, variants: bool = True
) -> np.ndarray:
    """(D,) bool: the candidates the states use, with `variants` their TP/PP
    variants (same model, GPU and precision) and precision variants (same model,
    GPU, TP, PP), and per query type the k cheapest candidates per unit of demand
    — overall, among those meeting the type's error bound alone, and by rental
    alone when a budget is set."""
    D = table.size
    used = np.zeros(D, dtype=bool)
    for st in states:
        used |= st.r > 0
    keep = used.copy()
    if variants and used.any():
        G, P_ = len(table.scenario.gpus), len(table.scenario.precisions)
        shape_key = (table.model * G + table.gpu) * P_ + table.precision
        keep |= np.isin(shape_key, shape_key[used])
        tp_key = ((table.model * G + table.gpu) * 16 + table.tp) * 8 + table.pp
        keep |= np.isin(tp_key, tp_key[used])
    util = table.scenario.policy.max_utilization
    feas = table.feasible
    with np.errstate(invalid="ignore"):
        rental = np.where(feas, table.replica_cost[None, :] * table.load / util, np.inf)
        unit = rental + np.where(feas, table.delay_cost, 0.0)
    accurate = np.where(table.pairs.error <= table.max_error[:, None], unit, np.inf)
    crit = [unit, accurate]
    if table.scenario.policy.budget is not None:
        crit.append(rental)
    kk = min(k, D)
    for c in crit:
        if kk >= D:
            top = np.broadcast_to(np.arange(D), c.shape)
        else:
            top = np.argpartition(c, kk - 1, axis=1)[:, :kk]
        ok = np.isfinite(np.take_along_axis(c, top, axis=1))
        keep[top[ok]] = True
    return keep


def _stages(pairs: int) -> list[tuple[str, int]]:
    """The stages to run, in order: ("k", k) a restricted model (k candidates per
    type and criterion; from k = 3 on with the TP/precision variants of the
    plans' candidates), then ("full", 0) the full MILP — or its LP relaxation,
    for a bound, when the MILP would not fit in the time left."""
    if pairs <= FULL_PAIRS // 8:
        return [("full", 0)]  # tiny: the full model at once
    if pairs <= FULL_PAIRS:
        return [("k", 3), ("full", 0)]
    # Quality first: the LP relaxation (a bound only) comes after the ladder; on a
    # large model it can take seconds the neighbourhoods put to better use.
    return [*(("k", k) for k in K_LADDER), ("full", 0)]


def polish(
    table: CandidateTable,
    start: AllocationState,
    runner: StageRunner,
    deadline: float,
    pool: list[AllocationState] | None = None,
    stop: StopSignal | None = None,
    current: Plan | None = None,
    gap: float = 1e-4,
    max_nodes: int | None = None,
) -> PolishResult:
    """Improve `start` with exact stages until they are done, `deadline`
    (monotonic) or `stop`; `pool` holds other good plans whose candidates join the
    neighbourhoods. Returns the best plan (never worse than `start`) and the best
    bound valid for the full problem."""
    res = PolishResult(start)
    pool = list(pool or [])
    seen: list[np.ndarray] = []
    pairs_full = int(table.feasible.sum())
    lp_s = LP_S_PER_10K_PAIRS * pairs_full / 10_000  # the LP relaxation's estimated time
    for kind, k in _stages(pairs_full):
        if stop is not None and stop.is_set():
            res.stopped = True
            break
        left = deadline - time.monotonic()
        if left < MIN_STAGE_S:
            break
        keep: np.ndarray | None = None
        if kind == "k":
            states = [res.state] if not seen else [res.state, *pool]
            keep = neighbourhood(table, states, k, variants=bool(seen) and k >= 3)
            if any((keep == s).all() for s in seen):
                continue
            if keep.sum() >= FULL_SHARE * table.size:
                kind, keep = "full", None  # as good as the full model: solve that
        relax = kind == "full" and not _full_milp_fits(pairs_full, left)
        if relax and (res.bound is not None or left < lp_s):
            break  # nothing left worth starting
        ma = build_arrays(table, current, keep, relax=relax)
        stage_gap = gap if keep is None else max(gap, RESTRICTED_GAP)
        limits = StageLimits(deadline, stop, stage_gap, max_nodes)
        out = runner.run(ma, None if relax else start_vector(ma, res.state), limits)
        if out.status == "stopped":
            res.stopped = True
        cut = out.status in ("limit", "stopped") and not out.raw.startswith("kSolutionLimit")
        if max_nodes is not None and cut:
            break  # deterministic mode: a stage the clock cut short does not count
        scope = f"k={k}" if keep is not None else "lp" if relax else "full"
        res.stages.append(_take(res, table, ma, out, current, gap, res.state.score(), scope))
        if keep is not None:
            seen.append(keep)
        if res.stopped or kind == "full":
            break
    return res


def _full_milp_fits(pairs: int, left: float) -> bool:
    """Worth starting the full MILP: small, or time for a few LP solves."""
    return pairs <= FULL_PAIRS or left >= 4 * LP_S_PER_10K_PAIRS * pairs / 10_000


def _take(
    res: PolishResult,
    table: CandidateTable,
    ma: MilpArrays,
    out: StageOutcome,
    current: Plan | None,
    gap: float,
    best_sc: tuple[float, float],
    scope: str,
) -> StageReport:
    """Fold one stage's answer into the result: its plan when better, its bound
    when valid for the full problem."""
    relaxed = not bool(ma.integer.any())
    improved = False
    objective = None
    if out.values is not None and not relaxed:
        cand = state_from_values(ma, table, out.values, current)
        sc = cand.score()
        objective = sc[1]
        if better(sc, best_sc):
            res.state, improved = cand, True
    if not ma.restricted:
        bound = out.objective if relaxed and out.status == "optimal" else out.bound
        if relaxed and out.status != "optimal":
            bound = None
        if bound is not None and (res.bound is None or bound > res.bound):
            res.bound, res.bound_source = float(bound), "lp" if relaxed else "milp"
        if not relaxed and out.status == "infeasible":
            res.proven_infeasible = True
    if res.bound is not None:
        # Proven whatever stopped the stage: the bound is valid for the full problem.
        cost = res.state.objective()
        res.proven_optimal = res.state.shortfall() <= 1e-6 and (
            cost - res.bound <= gap * max(abs(cost), 1e-9) + 1e-6
        )
    return StageReport(
        scope,
        len(ma.cand),
        len(ma.pair_i),
        out.status,
        objective,
        improved,
        out.wall_s,
        out.recovered,
        out.solver,
    )
