"""Rolling re-planning over a simulated day (issue #5, SPEC §5): a 24 h demand series
built from the Azure traces, re-planned every 5 simulated minutes *through the HTTP
API of a running service*, against plans held fixed for the day.

    python3 bench/rolling.py                  # sigma 0.04, every policy (about 11 min)
    python3 bench/rolling.py --sigmas 0.02,0.08 --out bench/results/rolling_sweep.json \\
        --policies svc-agh,agh-mean,agh-peak,milp-mean,milp-peak,gh       # sigma sweep
    python3 bench/rolling.py --policies svc-agh-max --out bench/results/rolling_extra.json
    python3 bench/rolling.py --minutes 30     # a 30-minute smoke run

Demand series (per query type of the demo scenario, requests/s, one value a minute)
-----------------------------------------------------------------------------------
    lambda_i(t) = lambda_i_demo x D_i(t) x S_i(t) x V_i(t),     t = 0 .. 1439 min

* D_i — diurnal envelope, 1 + a_i cos(2 pi (h - 15) / 24) with h the hour of day:
  mean 1, peak at 15:00, peak-to-trough R = (1 + a)/(1 - a): code R = 10 (a = 0.818),
  conversation R = 2 (a = 1/3), every other type R = 3 (a = 0.5) — the week of the
  2024 Azure traces shows code about 10:1 and conversation about 2:1.
* S_i — short-term shape from the 2023 Azure traces' per-minute request counts
  (app/data/trace_profiles.json): the partial first and last minutes dropped, each
  minute divided by the centred 15-minute moving average (so the trace hour's own
  slow drift is not counted twice with D), i.e. a mean-1 minute-level burst pattern.
  The trace is one service endpoint at 2.6 (code) / 5.5 (conversation) req/s while
  the demo's rates are fleet-level (27.8 / 45.1 req/s, the 2024 traces' means), so S
  is the average of N = round(demo rate / trace rate) independent copies (11 for
  code, 8 for conversation): N independent endpoints each as bursty as the trace.
  Each copy is the trace's pattern, restarted at a seeded random offset every trace
  length (no artificial hourly period). Types without a trace use the conversation
  pattern (N from their own rate, at least 1).
* V_i — volatility: exp(sigma x eps - sigma^2 / 2), eps iid N(0, 1) per minute and
  type, seeded; the same eps for every sigma (common random numbers), so the sigma
  sweep changes only the amplitude.

Everything is seeded (--seed, default 0); `demand_series` is deterministic per seed.

Re-planning and accounting
--------------------------
At t = 0, 5, ..., 1435 (288 re-plans) the controller posts the demand it observed —
the mean of the previous 5 minutes (wrapping to the previous day's end at t = 0) —
and the plan for that snapshot is in force for minutes t .. t+4 (a re-plan takes
about a second, negligible against 5 minutes). Each minute the plan in force is
evaluated by `evaluate_plan` in its stress mode against that minute's actual
demand (a scenario with those rates and a 1-minute horizon): rental for the
minute, plus the unmet penalty ($ per request) for planned-unmet requests and for
every request that misses its SLO because its deployment is past full capacity
(headroom is there to be used) or its accuracy bound. Churn = sum over deployments
of |change in GPUs| between consecutive plans in force (the SPEC's change-cost
measure, a model reload per GPU); reconfiguration $ = churn x $0.5 per GPU (the
demo's change_cost_per_gpu), charged to every policy that changes plans, whatever
its planner assumed.

Policies
--------
(a) svc-agh       the service's own behaviour: AGH re-plan every 5 min through
                  the REST API (PUT /v1/cluster, POST /v1/cluster/demand, GET
                  /v1/plan?wait_for_generation=N), warm start, change cost $0.5/GPU
(b) svc-agh-cc0   the same with change_cost_per_gpu = 0
(c) agh-mean / agh-peak    AGH plan held for 24 h, made for the day's mean demand /
                  each type's peak-hour mean demand
(d) milp-mean / milp-peak  exact MILP (max_utilization 0.8, like AGH) held for 24 h;
    milp1-mean / milp1-peak  the cost-minimal MILP with no headroom (u = 1.0)
(e) gh            GH re-plan every 5 min, engine called directly (deterministic)
(a') svc-agh-max  not in the default set: as (a), but the controller posts the
                  largest per-minute rate of the previous 5 minutes, not their mean

The service runs as a subprocess (`python3 -m app serve`, 127.0.0.1, a temporary
SQLite file, LLM_ALLOCATOR_TIME_BUDGET_S=1), a fresh one per service policy.
Output: bench/results/rolling.json (summaries, per-minute cost and GPU series,
per-step GPUs by type) and markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.model.demo import demo_scenario, trace_profiles
from app.engine.model.domain import Scenario
from app.engine.model.schemas import scenario_to_document
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.plan import Plan, plan_from_document
from app.engine.solvers.milp.audit import solve_milp
from app.engine.solvers.solve import solve

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "rolling.json"

MINUTES = 24 * 60
STEP = 5  # minutes between re-plans
PEAK_HOUR = 15.0
ENVELOPE_RATIO = {"code": 10.0, "conversation": 2.0}
DEFAULT_RATIO = 3.0
TRACE_OF = {"code": "code", "conversation": "conv"}  # query type -> trace
MA_WINDOW = 15  # minutes, detrending of the trace's per-minute counts
CHANGE_COST_PER_GPU = 0.5  # $ per GPU started or stopped (the demo policy's)

POLICIES = {
    "svc-agh": "(a) AGH re-plan /5 min via service, change cost $0.5/GPU",
    "svc-agh-cc0": "(b) AGH re-plan /5 min via service, change cost 0",
    "svc-agh-max": "(a') as (a), posting the 5-min max minute rate",
    "agh-mean": "(c) AGH fixed 24 h, planned for the mean",
    "agh-peak": "(c) AGH fixed 24 h, planned for the peak hour",
    "milp-mean": "(d) MILP (u=0.8) fixed 24 h, mean",
    "milp-peak": "(d) MILP (u=0.8) fixed 24 h, peak hour",
    "milp1-mean": "(d') cost-minimal MILP (u=1.0) fixed 24 h, mean",
    "milp1-peak": "(d') cost-minimal MILP (u=1.0) fixed 24 h, peak hour",
    "gh": "(e) GH re-plan /5 min (engine)",
}
SERVICE_POLICIES = ("svc-agh", "svc-agh-cc0", "svc-agh-max")
DEFAULT_POLICIES = tuple(p for p in POLICIES if p != "svc-agh-max")


# ------------------------------------------------------------------------------------
# Demand series


def envelope(ratio: float, minutes: int = MINUTES, peak_hour: float = PEAK_HOUR) -> np.ndarray:
    """Diurnal envelope with mean 1 and peak-to-trough `ratio`, peak at `peak_hour`."""
    a = (ratio - 1.0) / (ratio + 1.0)
    h = (np.arange(minutes) + 0.5) / 60.0
    return 1.0 + a * np.cos(2.0 * np.pi * (h - peak_hour) / 24.0)


def burst_pattern(counts: Sequence[float], window: int = MA_WINDOW) -> np.ndarray:
    """A trace's per-minute counts as a mean-1 burst pattern: partial first and last
    minutes dropped, each minute over the centred `window`-minute moving average."""
    c = np.asarray(counts, dtype=np.float64)[1:-1]
    half = window // 2
    trend = np.array([c[max(0, k - half) : k + half + 1].mean() for k in range(len(c))])
    s = np.where(trend > 0, c / np.where(trend > 0, trend, 1.0), 1.0)
    return s / s.mean()


def short_term_shape(
    pattern: np.ndarray, n_streams: int, rng: np.random.Generator, minutes: int = MINUTES
) -> np.ndarray:
    """Mean of `n_streams` independent copies of `pattern`, each restarted at a random
    offset every len(pattern) minutes."""
    L = len(pattern)
    blocks = -(-minutes // L)
    acc = np.zeros(blocks * L)
    for _ in range(n_streams):
        offs = rng.integers(0, L, size=blocks)
        acc += np.concatenate([np.roll(pattern, -int(o)) for o in offs])
    return acc[:minutes] / n_streams


def demand_series(
    scenario: Scenario,
    sigma: float,
    seed: int = 0,
    minutes: int = MINUTES,
    profiles: Mapping[str, Any] | None = None,
    bursts: bool = True,
) -> dict[str, np.ndarray]:
    """Per query type, `minutes` arrival rates (req/s); see the module docstring.
    `bursts=False` drops the trace-derived short-term shape S (sensitivity runs)."""
    traces = (profiles or trace_profiles())["traces"]
    patterns, rates = {}, {}
    for key, tr in traces.items():
        counts = [m["requests"] for m in tr["per_minute"]]
        patterns[key] = burst_pattern(counts)
        rates[key] = float(np.mean(counts[1:-1])) / 60.0
    out: dict[str, np.ndarray] = {}
    for i, q in enumerate(scenario.query_types):
        key = TRACE_OF.get(q.id, "conv")
        n = max(1, round(q.arrival_rate / rates[key]))
        shape = (
            short_term_shape(patterns[key], n, np.random.default_rng([seed, 0, i]), minutes)
            if bursts
            else np.ones(minutes)
        )
        eps = np.random.default_rng([seed, 1, i]).standard_normal(minutes)
        vol = np.exp(sigma * eps - 0.5 * sigma**2)
        env = envelope(ENVELOPE_RATIO.get(q.id, DEFAULT_RATIO), minutes)
        out[q.id] = q.arrival_rate * env * shape * vol
    return out


def snapshots(
    demand: Mapping[str, np.ndarray], step: int = STEP, how: str = "mean"
) -> list[dict[str, float]]:
    """What the controller posts at t = 0, step, 2 step, ...: the mean (or, with
    how="max", the largest per-minute) rate over the previous `step` minutes
    (wrapping to the day's end at t = 0)."""
    n = len(next(iter(demand.values())))
    agg = {"mean": np.mean, "max": np.max}[how]
    out = []
    for t in range(0, n, step):
        idx = np.arange(t - step, t) % n
        out.append({q: float(agg(v[idx])) for q, v in demand.items()})
    return out


def with_rates(s: Scenario, rates: Mapping[str, float], horizon_h: float | None = None) -> Scenario:
    qts = tuple(replace(q, arrival_rate=float(rates[q.id])) for q in s.query_types)
    pol = s.policy if horizon_h is None else replace(s.policy, horizon_h=horizon_h)
    return replace(s, query_types=qts, policy=pol)


def peak_hour_mean(v: np.ndarray, window: int = 60) -> float:
    """The largest mean over any `window` consecutive minutes (circular)."""
    w = min(window, len(v))
    c = np.concatenate([[0.0], np.cumsum(np.concatenate([v, v[: w - 1]]))])
    return float(((c[w:] - c[:-w]) / w)[: len(v)].max())


def basis_rates(demand: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Static plans' demand: the day's mean, and each type's peak-hour mean (the
    busiest 60 consecutive minutes of that type)."""
    return {
        "mean": {q: float(v.mean()) for q, v in demand.items()},
        "peak": {q: peak_hour_mean(v) for q, v in demand.items()},
    }


# ------------------------------------------------------------------------------------
# Accounting


def churn(a: Plan | None, b: Plan) -> int:
    """GPUs started or stopped per deployment between plans a and b."""
    if a is None:
        return 0
    before = {d.id: d.gpus for d in a.deployments}
    now = {d.id: d.gpus for d in b.deployments}
    return sum(abs(now.get(k, 0) - before.get(k, 0)) for k in before.keys() | now.keys())


def account(
    scenario: Scenario,
    demand: Mapping[str, np.ndarray],
    plans: Sequence[Plan],
    step: int = STEP,
    change_cost_per_gpu: float = CHANGE_COST_PER_GPU,
) -> dict[str, Any]:
    """Replay `plans` (plans[k] in force for minutes k*step .. k*step+step-1) against
    the per-minute `demand`: per-minute realised cost, violations and GPUs, and
    the day's totals."""
    n = len(next(iter(demand.values())))
    assert len(plans) * step >= n, "not enough plans for the series"
    cost = np.zeros(n)
    rental = np.zeros(n)
    gpus = np.zeros(n, dtype=np.int64)
    dem = np.zeros(n)
    slo = np.zeros(n)
    acc = np.zeros(n)
    bad = np.zeros(n)
    unmet = np.zeros(n)
    churns = []
    prev: Plan | None = None
    for k, plan in enumerate(plans[: -(-n // step)]):
        churns.append(churn(prev, plan))
        prev = plan
        for t in range(k * step, min(n, (k + 1) * step)):
            s_t = with_rates(scenario, {q: v[t] for q, v in demand.items()}, horizon_h=1 / 60)
            ev = evaluate_plan(s_t, plan, demand_factor=1.0 + 1e-12)
            st = ev.stress
            assert st is not None
            cost[t] = st.realised_cost
            rental[t] = ev.cost.rental
            gpus[t] = ev.total_gpus
            dem[t], slo[t], acc[t] = st.demand_rps, st.slo_violating_rps, st.accuracy_violating_rps
            unmet[t] = st.unmet_rps
            bad[t] = st.violation_share * st.demand_rps
    total_churn = int(sum(churns))
    total = float(cost.sum())
    return {
        "total_cost": total,
        "rental": float(rental.sum()),
        "penalties": total - float(rental.sum()),
        "churn_gpus": total_churn,
        "replans_changing_fleet": int(sum(1 for c in churns if c > 0)),
        "reconfiguration_cost": change_cost_per_gpu * total_churn,
        "total_with_reconfiguration": total + change_cost_per_gpu * total_churn,
        "violation_share": float(bad.sum() / dem.sum()),
        "slo_violation_share": float(slo.sum() / dem.sum()),
        "accuracy_violation_share": float(acc.sum() / dem.sum()),
        "unmet_share": float(unmet.sum() / dem.sum()),
        "mean_gpus": float(gpus.mean()),
        "max_gpus": int(gpus.max()),
        "per_minute": {
            "cost": cost.tolist(),
            "gpus": gpus.tolist(),
            "violating_rps": bad.tolist(),
        },
        "per_step_churn": churns,
    }


# ------------------------------------------------------------------------------------
# The service, driven over HTTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """One `python3 -m app serve` subprocess on 127.0.0.1 with its own database."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @staticmethod
    @contextlib.contextmanager
    def running(workdir: Path, time_budget_s: float, seed: int) -> Iterator[Service]:
        port = free_port()
        env = {
            **os.environ,
            "LLM_ALLOCATOR_TIME_BUDGET_S": str(time_budget_s),
            "LLM_ALLOCATOR_SEED": str(seed),
            "LLM_ALLOCATOR_LOG_LEVEL": "warning",
            # an empty database must start with the demo (demo_on_empty=false refuses
            # to start at all); the base spec is PUT right after
            "LLM_ALLOCATOR_DEMO_ON_EMPTY": "true",
        }
        env.pop("LLM_ALLOCATOR_TOKEN", None)
        log_path = workdir / f"service-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1",
                 "--port", str(port), "--db", str(workdir / f"state-{port}.db")],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            svc = Service(proc, f"http://127.0.0.1:{port}", log_path)
            try:
                svc._wait_up(60.0)
                yield svc
            finally:
                svc.stop()

    def _wait_up(self, timeout_s: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("service did not come up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def wait_plan(api: Any, generation: int, timeout_s: float = 60.0) -> dict[str, Any]:
    """Long-poll GET /v1/plan until the plan for `generation` (or later) is live."""
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = api.get(
            "/v1/plan", params={"wait_for_generation": generation, "timeout_s": 30}
        ).json()
        if (body.get("observed_generation") or 0) >= generation and body.get("plan"):
            return body
        degraded = next((c for c in body.get("conditions", []) if c["type"] == "Degraded"), {})
        if degraded.get("status") == "True" and degraded.get("reason") not in (
            "UnmetDemand",
            "Infeasible",
        ):
            raise RuntimeError(f"re-plan failed: {degraded}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no plan for generation {generation} in {timeout_s} s")


def run_service_policy(
    base: Scenario, snaps: Sequence[Mapping[str, float]], change_cost: float, args: Any,
    workdir: Path,
) -> tuple[list[Plan], dict[str, Any]]:  # fmt: skip
    """Drive a fresh service through the day; the plans it published, in order."""
    import httpx

    spec = scenario_to_document(
        replace(base, policy=replace(base.policy, change_cost_per_gpu=change_cost))
    )
    plans: list[Plan] = []
    walls, solver_walls, terms, infeasible = [], [], [], 0
    t0 = time.monotonic()
    with (
        Service.running(workdir, args.service_budget, args.seed) as svc,
        httpx.Client(base_url=svc.base_url, timeout=90) as api,
    ):
        r = api.put("/v1/cluster", json={"spec": spec})
        r.raise_for_status()
        wait_plan(api, int(r.json()["generation"]))
        for snap in snaps:
            t1 = time.monotonic()
            body = {
                "mode": "merge",
                "query_types": [{"id": q, "arrival_rate": round(v, 6)} for q, v in snap.items()],
            }
            r = api.post("/v1/cluster/demand", json=body)
            r.raise_for_status()
            live = wait_plan(api, int(r.json()["generation"]))
            walls.append(time.monotonic() - t1)
            solver = live.get("solver") or {}
            solver_walls.append(float(solver.get("wall_s") or 0.0))
            terms.append(str(solver.get("termination")))
            infeasible += 0 if live["plan"].get("feasible") else 1
            plans.append(plan_from_document(live["plan"]))
        metrics = api.get("/metrics").text
    replans = [
        line for line in metrics.splitlines()
        if line.startswith("llm_allocator_replans_total{")
    ]  # fmt: skip
    return plans, {
        "wall_s": time.monotonic() - t0,
        "round_trip_s_mean": float(np.mean(walls)),
        "round_trip_s_max": float(np.max(walls)),
        "solver_wall_s_mean": float(np.mean(solver_walls)),
        "terminations": {t: terms.count(t) for t in sorted(set(terms))},
        "infeasible_plans": infeasible,
        "replans_metric": replans,
    }


# ------------------------------------------------------------------------------------
# The other policies (engine called directly)


def static_plan(
    base: Scenario, rates: Mapping[str, float], kind: str, args: Any
) -> tuple[Plan, dict[str, Any]]:
    s = with_rates(base, rates)
    t0 = time.monotonic()
    if kind == "agh":
        o = solve(s, "agh", time_budget_s=args.static_budget, seed=args.seed)
        return o.plan, {"termination": o.termination, "wall_s": time.monotonic() - t0,
                        "planned_cost_per_h": o.evaluation.cost.total}  # fmt: skip
    mu = 1.0 if kind == "milp1" else 0.8
    s = replace(s, policy=replace(s.policy, max_utilization=mu))
    warm = solve(s, "gh").plan
    r = solve_milp(s, time_limit_s=args.milp_limit, warm_start=warm)
    plan = r.plan if r.plan is not None else warm
    return plan, {
        "termination": r.termination,
        "optimal": r.termination == "optimal",
        "relative_gap": r.relative_gap,
        "wall_s": time.monotonic() - t0,
        "planned_cost_per_h": r.objective,
    }


def gh_replan(base: Scenario, snaps: Sequence[Mapping[str, float]]) -> list[Plan]:
    plans: list[Plan] = []
    prev: Plan | None = None
    for snap in snaps:
        prev = solve(with_rates(base, snap), "gh", current=prev).plan
        plans.append(prev)
    return plans


def gpus_by_type_steps(plans: Sequence[Plan]) -> list[dict[str, int]]:
    out = []
    for p in plans:
        g: dict[str, int] = {}
        for d in p.deployments:
            g[d.gpu] = g.get(d.gpu, 0) + d.gpus
        out.append(dict(sorted(g.items())))
    return out


def _round(x: Any) -> Any:
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, list):
        return [_round(v) for v in x]
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


@dataclass
class SigmaRun:
    sigma: float
    policies: list[str]
    demand: dict[str, np.ndarray]
    snaps: list[dict[str, float]]
    bases: dict[str, dict[str, float]]


def prepare(sigma: float, policies: Sequence[str], args: Any) -> SigmaRun:
    demand = demand_series(demo_scenario(), sigma, args.seed, minutes=args.minutes)
    return SigmaRun(sigma, list(policies), demand, snapshots(demand), basis_rates(demand))


def run_service_jobs(
    runs: Sequence[SigmaRun], args: Any, workdir: Path
) -> dict[tuple[float, str], tuple[list[Plan], dict[str, Any]]]:
    """Every service policy of every sigma, `args.parallel` services at a time (each
    service's solver process takes one core; nothing else runs meanwhile)."""
    from concurrent.futures import ThreadPoolExecutor

    base = demo_scenario()
    jobs = [(r, name) for r in runs for name in r.policies if name in SERVICE_POLICIES]

    def one(job: tuple[SigmaRun, str]) -> tuple[list[Plan], dict[str, Any]]:
        r, name = job
        t0 = time.monotonic()
        cc = 0.0 if name == "svc-agh-cc0" else CHANGE_COST_PER_GPU
        snaps = snapshots(r.demand, how="max") if name == "svc-agh-max" else r.snaps
        plans, extra = run_service_policy(base, snaps, cc, args, workdir)
        extra["planning_wall_s"] = time.monotonic() - t0
        print(f"[sigma {r.sigma}] {name}: {len(plans)} re-plans through the service in "
              f"{extra['planning_wall_s']:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
        return plans, extra

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as ex:
        done = list(ex.map(one, jobs))
    return {(r.sigma, name): out for (r, name), out in zip(jobs, done, strict=True)}


def run_sigma(
    r: SigmaRun, service: Mapping[tuple[float, str], tuple[list[Plan], dict[str, Any]]],
    args: Any,
) -> dict[str, Any]:  # fmt: skip
    base = demo_scenario()
    out: dict[str, Any] = {
        "sigma": r.sigma,
        "demand": {q: v.tolist() for q, v in r.demand.items()},
        "basis_rates": r.bases,
        "policies": {},
    }
    for name in r.policies:
        t0 = time.monotonic()
        info: dict[str, Any] = {"label": POLICIES[name]}
        if name in SERVICE_POLICIES:
            plans, extra = service[(r.sigma, name)]
            info["service"] = extra
            t_plan = extra["planning_wall_s"]
        else:
            if name == "gh":
                plans = gh_replan(base, r.snaps)
            else:
                kind, basis = name.split("-")
                plan, extra = static_plan(base, r.bases[basis], kind, args)
                plans = [plan] * len(r.snaps)
                info["planning"] = extra
            t_plan = time.monotonic() - t0
        t1 = time.monotonic()
        acc = account(base, r.demand, plans)
        info.update(acc)
        info["gpus_by_type_per_step"] = gpus_by_type_steps(plans)
        info["planning_wall_s"] = t_plan
        info["accounting_wall_s"] = time.monotonic() - t1
        out["policies"][name] = info
        print(
            f"[sigma {r.sigma}] {name}: ${acc['total_cost']:.0f}/day, "
            f"{100 * acc['violation_share']:.2f}% viol., churn {acc['churn_gpus']}, "
            f"{acc['mean_gpus']:.1f} GPUs; planning {t_plan:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    if "gh" in r.policies and "agh-peak" in r.policies:
        out["no_bursts"] = no_bursts_sensitivity(r.sigma, args)
    return out


def no_bursts_sensitivity(sigma: float, args: Any) -> dict[str, Any]:
    """The same day without the trace-derived minute-level bursts S (envelope and
    volatility only): GH re-planning and the AGH peak-hour plan, to show how much of
    the re-planning penalties the bursts cause. Engine only (cheap)."""
    base = demo_scenario()
    demand = demand_series(base, sigma, args.seed, minutes=args.minutes, bursts=False)
    snaps = snapshots(demand)
    out = {}
    for name, plans in (
        ("gh", gh_replan(base, snaps)),
        ("agh-peak", [static_plan(base, basis_rates(demand)["peak"], "agh", args)[0]] * len(snaps)),
    ):
        a = account(base, demand, plans)
        out[name] = {k: v for k, v in a.items() if k not in ("per_minute", "per_step_churn")}
    print(f"[sigma {sigma}] without bursts: " + ", ".join(
        f"{k} ${v['total_cost']:.0f}" for k, v in out.items()), file=sys.stderr)  # fmt: skip
    return out


# ------------------------------------------------------------------------------------
# Markdown


def markdown(res: dict[str, Any]) -> str:
    out: list[str] = []
    for run in res["runs"]:
        pols = run["policies"]
        out.append(f"#### sigma = {run['sigma']}\n")
        out.append(
            "| policy | total $/day | rental $ | penalties $ | violating | unmet | churn GPUs "
            "| + reconfig. $0.5/GPU | mean GPUs | vs (a) |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        ref = pols.get("svc-agh", {}).get("total_cost")
        for p in pols.values():
            vs = f"{100 * (p['total_cost'] / ref - 1):+.1f}%" if ref else ""
            out.append(
                f"| {p['label']} | {p['total_cost']:.0f} | {p['rental']:.0f} "
                f"| {p['penalties']:.0f} | {100 * p['violation_share']:.2f}% "
                f"| {100 * p['unmet_share']:.2f}% | {p['churn_gpus']} "
                f"| {p['total_with_reconfiguration']:.0f} | {p['mean_gpus']:.1f} | {vs} |"
            )
        out.append("")
        if "svc-agh" in pols:
            a = pols["svc-agh"]["total_cost"]
            rows = []
            for name in ("agh-mean", "agh-peak", "milp-mean", "milp-peak", "milp1-mean",
                         "milp1-peak", "gh"):  # fmt: skip
                if name in pols:
                    other = pols[name]["total_cost"]
                    rows.append(f"{name} {100 * (a / other - 1):+.1f}%")
            out.append("Re-planning (a) vs each alternative (cost change): " + ", ".join(rows))
            out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sigmas", default="0.04", help="volatilities, comma-separated")
    ap.add_argument(
        "--policies",
        default=",".join(DEFAULT_POLICIES),
        help=f"comma-separated, from {','.join(POLICIES)}",
    )
    ap.add_argument("--service-budget", type=float, default=1.0, help="service AGH budget, s")
    ap.add_argument("--static-budget", type=float, default=5.0, help="static AGH budget, s")
    ap.add_argument("--milp-limit", type=float, default=60.0, help="static MILP limit, s")
    ap.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="service policies run at once (each needs a free core for its 1 s AGH budget)",
    )
    ap.add_argument("--minutes", type=int, default=MINUTES, help="shorter day, for a smoke run")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    sigmas = [float(x) for x in args.sigmas.split(",") if x]
    policies = [p for p in args.policies.split(",") if p]
    unknown = set(policies) - set(POLICIES)
    if unknown:
        ap.error(f"unknown policies {sorted(unknown)}; choose from {list(POLICIES)}")
    t0 = time.monotonic()
    from provenance import git_rev, machine  # bench/ is on sys.path when run as a script

    res: dict[str, Any] = {
        "meta": {
            "command": "python3 " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "git": git_rev(),
            "machine": machine(),
            "seed": args.seed,
            "sigmas": sigmas,
            "service_time_budget_s": args.service_budget,
            "static_agh_budget_s": args.static_budget,
            "milp_time_limit_s": args.milp_limit,
            "minutes": args.minutes,
            "step_min": STEP,
            "peak_hour": PEAK_HOUR,
            "envelope_ratio": {**ENVELOPE_RATIO, "other": DEFAULT_RATIO},
            "change_cost_per_gpu": CHANGE_COST_PER_GPU,
            "policies": POLICIES,
            "python": platform.python_version(),
            "parallel_services": args.parallel,
        },
        "runs": [],
    }
    runs = [prepare(s, policies, args) for s in sorted(sigmas)]
    with tempfile.TemporaryDirectory(prefix="rolling-") as tmp:
        service = run_service_jobs(runs, args, Path(tmp))
    res["meta"]["service_phase_wall_s"] = time.monotonic() - t0
    res["runs"] = [run_sigma(r, service, args) for r in runs]
    res["meta"]["wall_s"] = time.monotonic() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_round(res)) + "\n", encoding="utf-8")
    print(markdown(res))
    print(f"\nwrote {args.out} in {res['meta']['wall_s']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
