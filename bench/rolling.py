"""Rolling re-planning with the control loop closed on observations (issue #11 §7,
SPEC §4.1 and §5): a controller that posts raw 1-minute request counts to the
running service, plans that take effect only after the actuation delay, and the
day's money counted minute by minute — against plans held fixed for the day.

    python3 bench/rolling.py --minutes 60        # smoke run: the first hour of each day
    python3 bench/rolling.py --merge a.json b.json  # one study from runs made side by side
    nice -n 10 python3 bench/rolling.py          # the study (about 1 h on 2 busy cores)
    python3 bench/rolling.py --days code,conversation --policies svc-ucm,svc-wq \\
        --variant "quantile 0.9:demand_quantile=0.9" --variant "..." \\
        --out bench/results/rolling_tuning.json  # control-loop variants (docs/results.md)

Days (bench/demand_days.py `backtest_days`, seed 0; each with two days of history)
--------------------------------------------------------------------------------
* code, conversation — a day of the demo's code / conversation demand (diurnal
  envelope 10:1 / 2:1 peaking at 15:00, the 2023 Azure traces' minute-level burst
  pattern averaged over 11 / 8 endpoints, volatility sigma 0.04); used for tuning.
* flash-crowd — a conversation day on which demand doubles within 10 minutes at
  10:00, holds to 11:00 and falls back by 11:10; held out.
* ramp-6h — 08:00-14:00 of a 10 req/s type (code attributes, id "ramp") with one
  endpoint's real bursts (minutes with no request, bursts of 3-5x), ramping x1 ->
  x2.5 beyond its history, with a x2 flash crowd at 11:30-12:10; held out.
* random-walk — 30 req/s whose level drifts as a random walk; held out.
* surge — a conversation day, x1.5 within 5 minutes at 16:40, held to 17:30; a
  tuning day (it chose the forecast's surge guard).

A day's fleet serves the day's one query type from the demo catalog (its models,
GPUs with availability, precisions; max_utilization 0.8; change cost $0.5/GPU).
The minute's demand is a real count: requests = Poisson(60 x rate), seeded per
day (`--no-poisson`: rate x 60); the count is both what the controller posts and
what the accounting charges (rate = count / 60).

The controller (does nothing clever)
------------------------------------
The service runs as a subprocess (`python3 -m app serve`, 127.0.0.1, a temporary
SQLite file, AGH budget 1 s), a fresh one per policy and day. It starts with the
demo's six-type fleet; the day's scenario is PUT first with no change cost (a new
fleet, not one warm-started off the demo's deployments), then with the study's
policy (the demo's $0.5/GPU, control-loop defaults unless `--override`). Then
the controller posts the two days of history (and the accounted day's first hours
for the ramp) to POST /v1/observations/demand fast — 60-minute batches, the last
half hour minute by minute, not accounted, each plan it causes waited for (so that
the fleet at the start does not depend on which re-plans a newer batch stopped).
The last plan is the fleet at the start of the accounted span. Then, at the start
of each accounted minute m, it posts minute m - 1's count as one 60 s window; when
the answer says `changed`, it long-polls GET /v1/plan?wait_for_generation=N and
the plan is *published at m*.
That is all: no smoothing, no margin, no forecast of its own.

Actuation and accounting
------------------------
A plan published at (the start of) minute m is in force from minute m + 3
(`actuation_delay_s` = 180 s: replicas load); until then the previous plan serves;
plans take effect in publishing order. Each minute the plan in force is evaluated
by `evaluate_plan` in its stress mode against that minute's actual demand (a
scenario with that rate and a 1-minute horizon): rental for the minute, plus the
unmet penalty ($ per request) for planned-unmet requests and for every request that
misses its SLO because its deployment is past full capacity (the headroom is there
to be used) or its accuracy bound. $/day = rental + penalties. Churn = sum over
deployments of |change in GPUs| between consecutive plans in force (a model reload
per GPU); reconfiguration $ = churn x $0.5/GPU (the demo's change_cost_per_gpu),
charged to every policy that changes plans, reported apart and in "total incl.
reconfig.". Violating share = (SLO- or accuracy-violating + unmet requests) /
requests. Coverage (own accounting) = share of accounted minutes whose rate was at
or below the rate the plan in force was made for; the service's own coverage is the
change of GET /v1/forecast's counts over the accounted span (windows that ran
while an applied forecast was in force, from its actuation on).

Policies
--------
svc-last / svc-wq / svc-ucm  the service, forecasting with `last` /
                  `window_quantile` / `ucm_conformal` (the policy default), fed raw
                  minutes; every other control-loop field at its default
svc-mean          the old loop, for reference: every 5 minutes POST
                  /v1/cluster/demand with the mean rate of the last 5 minutes (same
                  3-minute actuation delay)
agh-<basis> / milp-<basis>   one plan for the whole span, AGH (5 s) or the exact
                  MILP (CBC, 60 s, warm-started from GH), sized for the span's
                  peak-hour mean (`peak`) or its 99th / 99.9th percentile minute
                  (`p99`, `p999`) or its busiest minute (`max`)
best-fixed        per day, the cheapest of those fixed plans ($/day = rental +
                  penalties) — chosen with hindsight of the day's demand, so it is
                  a bound no real fixed plan beats
oracle-agh / oracle-milp     not a policy, a bound: perfect foresight and no
                  actuation delay, each minute the AGH (1 s) / MILP plan for the
                  rate of a 3%-spaced grid at or just above that minute's actual rate
                  (the fleet's 20% headroom kept): what re-planning can save at best
                  with this catalog and planner

Where a service policy's rental goes: with the oracles run, each service policy
also gets `fresh_rental_at_planned` — the rental of fresh AGH / MILP plans (no live
plan, no change cost) for the rates it planned, minute by minute — so that its
cost splits into forecast safety (fresh MILP at planned - oracle-milp), planner
(fresh AGH - fresh MILP) and the warm-started, change-costed path (its rental -
fresh AGH).

Output: bench/results/rolling.json (provenance, per day and policy the summary,
per-minute cost / GPUs / violating requests / planned rate for the plotted
policies) and markdown tables on stdout. With `--variant` (tuning runs): one
summary per variant, day and service policy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.engine.model.demo import demo_scenario, trace_profiles
from app.engine.model.domain import Policy, Scenario
from app.engine.model.schemas import scenario_to_document
from app.engine.plan.evaluate import evaluate_plan
from app.engine.plan.plan import Plan, plan_from_document
from app.engine.solvers.milp.audit import solve_milp
from app.engine.solvers.solve import solve

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "rolling.json"

MINUTES = 24 * 60
MINUTE_S = 60.0
PEAK_HOUR = 15.0
ENVELOPE_RATIO = {"code": 10.0, "conversation": 2.0}
DEFAULT_RATIO = 3.0
TRACE_OF = {"code": "code", "conversation": "conv"}  # query type -> trace
MA_WINDOW = 15  # minutes, detrending of the trace's per-minute counts
CHANGE_COST_PER_GPU = 0.5  # $ per GPU started or stopped (the demo policy's)
ACTUATION_DELAY_S = 180.0  # the world's: a published plan is in force this much later
MEAN_STEP_MIN = 5  # the old loop posts the 5-minute mean every 5 minutes
HISTORY_BATCH_MIN = 60
HISTORY_TAIL_MIN = 30  # the last history minutes are posted one by one
FIXED_BASES = ("peak", "p99", "p999", "max")
FIXED_KINDS = ("agh", "milp")
ORACLE_STEP = 0.03  # the oracle plans each minute at the next rate of a 3%-spaced grid
ORACLE_MIN_RPS = 0.1
DEFAULT_METHOD = Policy().forecast

METHOD_OF = {"svc-last": "last", "svc-wq": "window_quantile", "svc-ucm": "ucm_conformal"}
POLICIES = {
    "svc-last": "service, raw minutes, forecast `last`",
    "svc-wq": "service, raw minutes, forecast `window_quantile`",
    "svc-ucm": "service, raw minutes, forecast `ucm_conformal`",
    "svc-mean": "old loop: POST /v1/cluster/demand, 5-min mean every 5 min",
    **{
        f"{k}-{b}": f"{k.upper()} fixed for the span, sized for its "
        + {
            "peak": "peak-hour mean",
            "p99": "p99 minute",
            "p999": "p99.9 minute",
            "max": "busiest minute",
        }[b]
        for k in FIXED_KINDS
        for b in FIXED_BASES
    },
}
ORACLES = {
    "oracle-agh": "perfect foresight, no delay: each minute the AGH plan for its own rate "
    "(a bound; its churn is an artefact of independent plans)",
    "oracle-milp": "perfect foresight, no delay: each minute the MILP plan for its own rate "
    "(a bound; its churn is an artefact of independent plans)",
}
POLICIES.update(ORACLES)
SERVICE_POLICIES = (*METHOD_OF, "svc-mean")
DEFAULT_POLICY = next(k for k, m in METHOD_OF.items() if m == DEFAULT_METHOD)
PLOTTED_FIXED = ("agh-peak", "milp-peak")  # per-minute series kept (and best-fixed's)


# ------------------------------------------------------------------------------------
# Demand series (the trace-derived day; bench/demand_days.py builds its days from it)


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
    """Per query type of `scenario`, `minutes` arrival rates (req/s):
    lambda_i(t) = lambda_i x D_i(t) x S_i(t) x V_i(t) — the diurnal envelope D (code
    10:1, conversation 2:1, others 3:1, peak at 15:00), the trace's burst pattern S
    averaged over N = round(lambda_i / trace rate) independent copies (11 for code,
    8 for conversation; types without a trace use the conversation trace), and
    volatility V = exp(sigma eps - sigma^2 / 2), eps iid N(0, 1) per minute, the
    same eps for every sigma. `bursts=False` drops S. Deterministic per seed."""
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
    demand: Mapping[str, np.ndarray], step: int = MEAN_STEP_MIN, how: str = "mean"
) -> list[dict[str, float]]:
    """The old controller's posts at t = 0, step, 2 step, ...: the mean (or, with
    how="max", the largest per-minute) rate over the previous `step` minutes
    (wrapping to the series' end at t = 0)."""
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


def peak_hour_mean(v: np.ndarray, window: int = 60, circular: bool = True) -> float:
    """The largest mean over any `window` consecutive minutes (wrapping around the
    end when `circular`: a day follows a day)."""
    w = min(window, len(v))
    x = np.concatenate([v, v[: w - 1]]) if circular else np.asarray(v)
    c = np.concatenate([[0.0], np.cumsum(x)])
    means = (c[w:] - c[:-w]) / w
    return float((means[: len(v)] if circular else means).max())


def fixed_sizing(v: np.ndarray) -> dict[str, float]:
    """The rates a fixed plan is sized for: the span's peak-hour mean and its 99th
    and 99.9th percentile and largest minute."""
    return {
        "peak": peak_hour_mean(v, circular=False),
        "p99": float(np.quantile(v, 0.99)),
        "p999": float(np.quantile(v, 0.999)),
        "max": float(np.max(v)),
    }


# ------------------------------------------------------------------------------------
# The days


@dataclass(frozen=True)
class StudyDay:
    """One accounted span and its history. `counts[m]` = requests in minute m
    (minute 0 starts at `epoch0_s`); the accounted span is minutes [test_start,
    test_start + test_minutes); `scenario` is the day's fleet (one query type)."""

    name: str
    query_type: str
    counts: np.ndarray
    test_start: int
    test_minutes: int
    held_out: bool
    description: str
    scenario: Scenario
    epoch0_s: float

    @property
    def rates(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=np.float64) / MINUTE_S

    @property
    def span_rates(self) -> np.ndarray:
        return self.rates[self.test_start : self.test_start + self.test_minutes]

    def demand(self) -> dict[str, np.ndarray]:
        return {self.query_type: self.span_rates}


def day_scenario(query_type: str) -> Scenario:
    """The demo catalog serving one query type: the demo's type of that id, or the
    code type's attributes under the new id (the ramp day's type)."""
    s = demo_scenario()
    by_id = {q.id: q for q in s.query_types}
    q = by_id.get(query_type) or replace(by_id["code"], id=query_type)
    return replace(s, query_types=(q,))


def minute_counts(rates: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Requests per minute: Poisson(60 x rate) with `rng`, else 60 x rate."""
    lam = np.clip(np.asarray(rates, dtype=np.float64), 0.0, None) * MINUTE_S
    return rng.poisson(lam).astype(np.float64) if rng is not None else lam


def study_days(
    seed: int = 0,
    names: Sequence[str] | None = None,
    minutes: int | None = None,
    poisson: bool = True,
    count_seed: int | None = None,
) -> list[StudyDay]:
    """The study's days from bench/demand_days.py (`seed`), counts drawn per day with
    `count_seed` (default `seed`); `minutes` shortens each accounted span (smoke
    runs)."""
    import demand_days  # local: demand_days builds its days from this module

    out = []
    for k, d in enumerate(demand_days.backtest_days(seed)):
        if names is not None and d.name not in names:
            continue
        cs = seed if count_seed is None else count_seed
        rng = np.random.default_rng([cs, 11, k]) if poisson else None
        out.append(
            StudyDay(
                d.name,
                d.query_type,
                minute_counts(d.series, rng),
                d.test_start,
                min(d.test_minutes, minutes or d.test_minutes),
                d.held_out,
                d.description,
                day_scenario(d.query_type),
                demand_days.EPOCH0_S,
            )
        )
    return out


# ------------------------------------------------------------------------------------
# Accounting


def churn(a: Plan | None, b: Plan) -> int:
    """GPUs started or stopped per deployment between plans a and b."""
    if a is None or a is b:
        return 0
    before = {d.id: d.gpus for d in a.deployments}
    now = {d.id: d.gpus for d in b.deployments}
    return sum(abs(now.get(k, 0) - before.get(k, 0)) for k in before.keys() | now.keys())


def in_force(
    n: int, initial: Any, published: Sequence[tuple[int, Any]], delay_min: int
) -> list[Any]:
    """What is in force in each of the minutes 0 .. n-1: `initial` from minute 0;
    an item published at (the start of) minute t — after the controller observed
    minute t - 1 — from minute t + `delay_min` on, items in publishing order (a
    later one replaces an earlier one once both are in force)."""
    pubs = sorted(published, key=lambda p: p[0])  # stable: same-minute order kept
    out = []
    cur, k = initial, 0
    for m in range(n):
        while k < len(pubs) and pubs[k][0] + delay_min <= m:
            cur = pubs[k][1]
            k += 1
        out.append(cur)
    return out


def account(
    scenario: Scenario,
    demand: Mapping[str, np.ndarray],
    plans: Sequence[Plan],
    step: int = 1,
    change_cost_per_gpu: float = CHANGE_COST_PER_GPU,
    planned: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Replay `plans` (plans[k] in force for minutes k*step .. k*step+step-1) against
    the per-minute `demand` (req/s): per-minute realised cost, violations and GPUs,
    the totals, and — with `planned` (per type, the rate the plan in force was made
    for, per minute) — the coverage: the share of (minute, type) pairs whose rate
    was at or below the planned rate."""
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
    out: dict[str, Any] = {
        "total_cost": total,
        "rental": float(rental.sum()),
        "penalties": total - float(rental.sum()),
        "churn_gpus": total_churn,
        "fleet_changes": int(sum(1 for c in churns if c > 0)),
        "reconfiguration_cost": change_cost_per_gpu * total_churn,
        "total_with_reconfiguration": total + change_cost_per_gpu * total_churn,
        "violation_share": float(bad.sum() / dem.sum()) if dem.sum() > 0 else 0.0,
        "slo_violation_share": float(slo.sum() / dem.sum()) if dem.sum() > 0 else 0.0,
        "accuracy_violation_share": float(acc.sum() / dem.sum()) if dem.sum() > 0 else 0.0,
        "unmet_share": float(unmet.sum() / dem.sum()) if dem.sum() > 0 else 0.0,
        "mean_gpus": float(gpus.mean()),
        "max_gpus": int(gpus.max()),
        "per_minute": {
            "cost": cost.tolist(),
            "gpus": gpus.tolist(),
            "violating_rps": bad.tolist(),
        },
        "per_step_churn": churns,
    }
    if planned is not None:
        inside = total_n = 0
        for q, v in demand.items():
            p = np.asarray(planned[q], dtype=np.float64)[:n]
            inside += int((np.asarray(v)[: len(p)] <= p * (1 + 1e-9)).sum())
            total_n += len(p)
        out["coverage"] = inside / total_n if total_n else None
    return out


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
            "PYTHONPATH": str(ROOT),  # this checkout's `app`, whatever is installed
            "LLM_ALLOCATOR_TIME_BUDGET_S": str(time_budget_s),
            "LLM_ALLOCATOR_SEED": str(seed),
            "LLM_ALLOCATOR_LOG_LEVEL": "warning",
            # an empty database must start with the demo (demo_on_empty=false refuses
            # to start at all); the base spec is PUT right after
            "LLM_ALLOCATOR_DEMO_ON_EMPTY": "true",
            # The replay runs a day in minutes of wall time, so a 5 s background
            # improvement would land many simulated minutes late (or be stopped by the
            # next minute's generation): the study measures the re-plans alone. (On
            # these one-type days AGH converges on most re-plans, so an improvement
            # has little to find.) The controller would pick up an improved version.
            "LLM_ALLOCATOR_IMPROVE_BUDGET_S": os.environ.get("LLM_ALLOCATOR_IMPROVE_BUDGET_S", "0"),
        }
        env.pop("LLM_ALLOCATOR_TOKEN", None)
        log_path = workdir / f"service-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--db",
                    str(workdir / f"state-{port}.db"),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
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


def wait_plan(api: Any, generation: int, timeout_s: float = 120.0) -> dict[str, Any]:
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


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def minute_windows(
    query_type: str, counts: np.ndarray, lo: int, hi: int, epoch0_s: float
) -> list[dict[str, Any]]:
    """Minutes lo .. hi-1 as the 60 s windows POST /v1/observations/demand takes."""
    return [
        {
            "query_type": query_type,
            "start": iso(epoch0_s + MINUTE_S * m),
            "window_s": MINUTE_S,
            "requests": float(counts[m]),
        }
        for m in range(lo, hi)
    ]


@dataclass
class ControllerRun:
    """What a controller saw: the plan in force at the start of the span (and the
    rates it was made for), then each plan published at minute k of the span
    (relative to its start) with its planned rates; timings; the service's
    coverage counts before and after the span."""

    initial: tuple[Plan, dict[str, float]]
    published: list[tuple[int, Plan, dict[str, float]]] = field(default_factory=list)
    posts: int = 0
    round_trips_s: list[float] = field(default_factory=list)
    solver_walls_s: list[float] = field(default_factory=list)
    terminations: list[str] = field(default_factory=list)
    infeasible_plans: int = 0
    forecast_before: dict[str, Any] | None = None
    forecast_after: dict[str, Any] | None = None

    improvements: int = 0
    version: int = 0

    def note_plan(self, live: Mapping[str, Any]) -> None:
        solver = live.get("solver") or {}
        self.version = int(live.get("version") or 0)
        if solver.get("source") == "improvement":
            self.improvements += 1
            return
        self.solver_walls_s.append(float(solver.get("wall_s") or 0.0))
        self.terminations.append(str(solver.get("termination")))
        self.infeasible_plans += 0 if live["plan"].get("feasible") else 1


def planned_rates(live: Mapping[str, Any]) -> dict[str, float]:
    """The rates the published plan was made for (its analysis records them)."""
    return {
        d["query_type"]: float(d["planned_rps"])
        for d in (live.get("analysis") or {}).get("demand") or []
    }


def post_observations(api: Any, windows: list[dict[str, Any]]) -> dict[str, Any]:
    r = api.post("/v1/observations/demand", json={"observations": windows})
    if r.status_code != 202:
        raise RuntimeError(f"POST /v1/observations/demand: {r.status_code} {r.text[:500]}")
    body: dict[str, Any] = r.json()
    return body


def run_observation_loop(
    api: Any,
    day: StudyDay,
    batch_min: int = HISTORY_BATCH_MIN,
    tail_min: int = HISTORY_TAIL_MIN,
    progress: Callable[[int], None] | None = None,
) -> ControllerRun:
    """The controller of the study: history fast (not accounted), then one 60 s
    window a minute, waiting for the plan when the service says `changed`. `api`
    is an httpx-like client of a service whose spec is already PUT. The history,
    too, waits for each plan it causes: a re-plan that a newer batch stopped would
    make the fleet at the start of the span depend on timing."""
    qt, counts, t0 = day.query_type, day.counts, day.test_start
    lo, end = 0, t0 - 1  # minute t0 - 1 is posted at the first accounted minute
    generation = None
    while lo < end:
        hi = lo + 1 if end - lo <= tail_min else min(end - tail_min, lo + batch_min)
        ans = post_observations(api, minute_windows(qt, counts, lo, hi, day.epoch0_s))
        generation = ans["generation"]
        if ans["changed"]:
            wait_plan(api, int(generation))
        lo = hi
    if generation is None:
        generation = int(api.get("/v1/cluster").json()["generation"])
    live = wait_plan(api, int(generation))
    run = ControllerRun((plan_from_document(live["plan"]), planned_rates(live)))
    run.version = int(live.get("version") or 0)
    run.forecast_before = api.get("/v1/forecast").json()
    for k in range(day.test_minutes):
        m = t0 + k
        t1 = time.monotonic()
        ans = post_observations(api, minute_windows(qt, counts, m - 1, m, day.epoch0_s))
        run.posts += 1
        if ans["changed"]:
            live = wait_plan(api, int(ans["generation"]))
        else:  # a background improvement may have published a new version meanwhile
            live = api.get("/v1/plan").json()
            if int(live.get("version") or 0) <= run.version:
                live = None
        if live is not None:
            run.note_plan(live)
            run.published.append((k, plan_from_document(live["plan"]), planned_rates(live)))
        run.round_trips_s.append(time.monotonic() - t1)
        if progress is not None:
            progress(k)
    run.forecast_after = api.get("/v1/forecast").json()
    return run


def run_mean_loop(api: Any, day: StudyDay, step: int = MEAN_STEP_MIN) -> ControllerRun:
    """The old controller: every `step` minutes the mean rate of the last `step`
    minutes, POST /v1/cluster/demand, wait for the plan. The plan for the mean of
    the `step` minutes before the span is in force at its start."""
    qt, rates, t0 = day.query_type, day.rates, day.test_start

    def post(mean: float) -> dict[str, Any]:
        body = {"mode": "merge", "query_types": [{"id": qt, "arrival_rate": round(mean, 6)}]}
        r = api.post("/v1/cluster/demand", json=body)
        r.raise_for_status()
        return wait_plan(api, int(r.json()["generation"]))

    first = float(rates[t0 - step : t0].mean())
    run = ControllerRun((plan_from_document(post(first)["plan"]), {qt: first}))
    for k in range(step, day.test_minutes, step):
        m = t0 + k
        mean = float(rates[m - step : m].mean())
        t1 = time.monotonic()
        live = post(mean)
        run.posts += 1
        run.note_plan(live)
        run.published.append((k, plan_from_document(live["plan"]), {qt: mean}))
        run.round_trips_s.append(time.monotonic() - t1)
    return run


def service_spec(day: StudyDay, name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The day's scenario document for a service policy: the policy's defaults, the
    forecast method of `name`, then `overrides` (tuning runs)."""
    pol = day.scenario.policy
    if name in METHOD_OF:
        pol = replace(pol, forecast=METHOD_OF[name])
    pol = replace(pol, **dict(overrides))
    return scenario_to_document(replace(day.scenario, policy=pol))


def fresh_fleet(api: Any, spec: dict[str, Any]) -> Any:
    """PUT the day's spec on a service that starts with the demo's six-type fleet, as
    if the fleet were new: first without a change cost (the plan is made from
    scratch, not warm-started off the demo's deployments, which a change cost
    would keep), then as given. Returns the second PUT's response."""
    free = {**spec, "policy": {**spec["policy"], "change_cost_per_gpu": 0.0}}
    r = api.put("/v1/cluster", json={"spec": free})
    r.raise_for_status()
    wait_plan(api, int(r.json()["generation"]))
    r = api.put("/v1/cluster", json={"spec": spec})
    r.raise_for_status()
    return r


def run_service_policy(
    day: StudyDay, name: str, args: Any, workdir: Path
) -> tuple[ControllerRun, float]:
    """A fresh service driven through the day by the controller of `name`."""
    import httpx

    t0 = time.monotonic()
    with (
        Service.running(workdir, args.service_budget, args.seed) as svc,
        httpx.Client(base_url=svc.base_url, timeout=120) as api,
    ):
        r = fresh_fleet(api, service_spec(day, name, args.overrides))
        if name == "svc-mean":
            run = run_mean_loop(api, day)
        else:
            wait_plan(api, int(r.json()["generation"]))
            every = max(1, day.test_minutes // 8)

            def progress(k: int) -> None:
                if (k + 1) % every == 0:
                    print(
                        f"  [{day.name}] {name}: minute {k + 1}/{day.test_minutes}, "
                        f"{time.monotonic() - t0:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )

            run = run_observation_loop(api, day, progress=progress)
    return run, time.monotonic() - t0


def service_coverage(run: ControllerRun, query_type: str) -> dict[str, Any] | None:
    """GET /v1/forecast's coverage counted over the span only (after - before)."""
    if run.forecast_before is None or run.forecast_after is None:
        return None

    def counts(report: Mapping[str, Any]) -> tuple[int, int, float]:
        q = next(x for x in report["query_types"] if x["query_type"] == query_type)
        c = q["coverage"]
        return int(c["windows"]), int(c["above_planned"]), float(c["target"])

    w0, a0, _ = counts(run.forecast_before)
    w1, a1, target = counts(run.forecast_after)
    n = w1 - w0
    return {
        "windows": n,
        "above_planned": a1 - a0,
        "share_at_or_below": (n - (a1 - a0)) / n if n else None,
        "target": target,
        "whole_run": counts(run.forecast_after)[:2],
    }


# ------------------------------------------------------------------------------------
# Fixed plans (engine called directly)


def static_plan(
    base: Scenario,
    rates: Mapping[str, float],
    kind: str,
    args: Any,
    agh_budget_s: float | None = None,
) -> tuple[Plan, dict[str, Any]]:
    s = with_rates(base, rates)
    t0 = time.monotonic()
    if kind == "agh":
        budget = args.static_budget if agh_budget_s is None else agh_budget_s
        o = solve(s, "agh", time_budget_s=budget, seed=args.seed)
        return o.plan, {"termination": o.termination, "wall_s": time.monotonic() - t0,
                        "planned_cost_per_h": o.evaluation.cost.total}  # fmt: skip
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


def oracle_grid(v: np.ndarray, step: float = ORACLE_STEP) -> np.ndarray:
    """Rates spaced `step` apart in log from the span's least (at least
    ORACLE_MIN_RPS) to at or beyond its largest minute."""
    lo = max(float(np.min(v)), ORACLE_MIN_RPS)
    hi = max(float(np.max(v)), lo)
    n = int(np.ceil(np.log(hi / lo) / step - 1e-9)) + 1
    return np.asarray(lo * np.exp(step * np.arange(n)))


def oracle_schedule(
    day: StudyDay, kind: str, args: Any, up_to: float = 0.0
) -> tuple[list[Plan], list[float], dict[str, list[float]]]:
    """Perfect foresight and no actuation delay: each minute the plan made for the
    grid rate at or just above that minute's actual rate (at the fleet's
    headroom): what re-planning could save at best with this catalog and planner.
    Also the grid and the rental ($/h) of each grid rate's plan, the grid reaching
    at least `up_to` (the largest rate any policy planned for)."""
    v = day.span_rates
    grid = oracle_grid(np.append(v, up_to))
    plans = [
        static_plan(day.scenario, {day.query_type: float(r)}, kind, args, args.service_budget)[0]
        for r in grid
    ]
    price = {g.id: g.price_per_hour for g in day.scenario.gpus}
    rental = [sum(price[d.gpu] * d.gpus for d in p.deployments) for p in plans]
    idx = np.minimum(np.searchsorted(grid, v * (1 - 1e-12)), len(grid) - 1)
    curve = {"grid": grid.tolist(), "rental_per_h": rental}
    return [plans[i] for i in idx], [float(grid[i]) for i in idx], curve


def fresh_rental(curve: Mapping[str, Sequence[float]], planned: Sequence[float]) -> float:
    """$ of renting, each minute, the fresh plan (no live plan, no change cost) for
    the grid rate at or just above the rate planned that minute."""
    grid = np.asarray(curve["grid"])
    rent = np.asarray(curve["rental_per_h"])
    p = np.nan_to_num(np.asarray(planned, dtype=np.float64))
    idx = np.minimum(np.searchsorted(grid, p * (1 - 1e-12)), len(grid) - 1)
    return float(rent[idx].sum() / 60.0)


def gpus_by_type(plan: Plan) -> dict[str, int]:
    g: dict[str, int] = {}
    for d in plan.deployments:
        g[d.gpu] = g.get(d.gpu, 0) + d.gpus
    return dict(sorted(g.items()))


def _round(x: Any) -> Any:
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, list):
        return [_round(v) for v in x]
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


# ------------------------------------------------------------------------------------
# One day


def summarize_service(
    day: StudyDay, name: str, run: ControllerRun, wall_s: float, delay_min: int
) -> dict[str, Any]:
    """Account the plans a controller got, each in force `delay_min` minutes after
    it was published."""
    n, qt = day.test_minutes, day.query_type
    pubs = [(k, (p, r)) for k, p, r in run.published]
    force = in_force(n, run.initial, pubs, delay_min)
    plans = [p for p, _ in force]
    planned = {qt: [r.get(qt, float("nan")) for _, r in force]}
    info: dict[str, Any] = {"label": POLICIES.get(name, name)}
    info.update(account(day.scenario, day.demand(), plans, planned=planned))
    info["per_minute"]["planned_rps"] = planned[qt]
    info["service_coverage"] = service_coverage(run, qt)
    info["gpus_by_type_changes"] = [
        (0, gpus_by_type(run.initial[0])),
        *[(k + delay_min, gpus_by_type(p)) for k, p, _ in run.published if k + delay_min < n],
    ]
    rt = run.round_trips_s or [0.0]
    info["service"] = {
        "wall_s": wall_s,
        "posts": run.posts,
        "plans_published": len(run.published),
        "improvements_published": run.improvements,
        "round_trip_s_mean": float(np.mean(rt)),
        "round_trip_s_max": float(np.max(rt)),
        "solver_wall_s_mean": float(np.mean(run.solver_walls_s or [0.0])),
        "terminations": {t: run.terminations.count(t) for t in sorted(set(run.terminations))},
        "infeasible_plans": run.infeasible_plans,
    }
    return info


def run_day(day: StudyDay, policies: Sequence[str], args: Any, workdir: Path) -> dict[str, Any]:
    delay_min = round(args.actuation_delay_s / MINUTE_S)
    v = day.span_rates
    sizing = fixed_sizing(v)
    out: dict[str, Any] = {
        "name": day.name,
        "query_type": day.query_type,
        "held_out": day.held_out,
        "description": day.description,
        "minutes": day.test_minutes,
        "start_minute_of_day": day.test_start % MINUTES,
        "requests": float(v.sum() * MINUTE_S),
        "demand": {day.query_type: v.tolist()},
        "fixed_sizing": sizing,
        "policies": {},
    }
    for name in policies:
        t0 = time.monotonic()
        if name in SERVICE_POLICIES:
            run, wall = run_service_policy(day, name, args, workdir)
            info = summarize_service(day, name, run, wall, delay_min)
        elif name in ORACLES:
            kind = name.split("-")[1]
            up_to = max(
                (np.nanmax(p["per_minute"]["planned_rps"]) for k, p in out["policies"].items()
                 if k in SERVICE_POLICIES),
                default=0.0,
            )  # fmt: skip
            plans, rates, curve = oracle_schedule(day, kind, args, float(up_to))
            out.setdefault("fresh_plan_rental_curves", {})[kind] = curve
            info = {"label": POLICIES[name]}
            info.update(account(day.scenario, day.demand(), plans,
                                planned={day.query_type: rates}))  # fmt: skip
            info["per_minute"]["planned_rps"] = rates
        else:
            kind, basis = name.split("-")
            rate = sizing[basis]
            plan, extra = static_plan(day.scenario, {day.query_type: rate}, kind, args)
            info = {"label": POLICIES[name], "planning": extra, "sized_for_rps": rate}
            info.update(account(day.scenario, day.demand(), [plan] * day.test_minutes,
                                planned={day.query_type: [rate] * day.test_minutes}))  # fmt: skip
            info["per_minute"]["planned_rps"] = [rate] * day.test_minutes
            info["gpus_by_type_changes"] = [(0, gpus_by_type(plan))]
        info["wall_s"] = time.monotonic() - t0
        out["policies"][name] = info
        cov = info.get("coverage")
        print(
            f"[{day.name}] {name}: ${info['total_cost']:.0f}/span (rental "
            f"${info['rental']:.0f}, penalties ${info['penalties']:.0f}), "
            f"{100 * info['violation_share']:.3f}% viol., churn {info['churn_gpus']}, "
            f"{info['mean_gpus']:.1f} GPUs, coverage "
            f"{'-' if cov is None else f'{100 * cov:.1f}%'}; {info['wall_s']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    # Where a service policy's rental went: renting, each minute, a fresh plan for the
    # rate it planned (AGH / MILP) vs what it rented (warm-started, change-costed plans)
    for kind, curve in out.get("fresh_plan_rental_curves", {}).items():
        for k in SERVICE_POLICIES:
            if k in out["policies"]:
                p = out["policies"][k]
                p.setdefault("fresh_rental_at_planned", {})[kind] = fresh_rental(
                    curve, p["per_minute"]["planned_rps"]
                )
    fixed = {k: p for k, p in out["policies"].items() if k.split("-")[0] in FIXED_KINDS}
    if fixed:
        out["best_fixed"] = min(fixed, key=lambda k: fixed[k]["total_cost"])
    keep = {*SERVICE_POLICIES, *PLOTTED_FIXED, *ORACLES, out.get("best_fixed")}
    for k, p in out["policies"].items():
        if k not in keep:
            p.pop("per_minute", None)
            p.pop("per_step_churn", None)
        else:
            # per-minute churn as (minute, GPUs) pairs: the rest are zeros
            p["churn_events"] = [(m, c) for m, c in enumerate(p.pop("per_step_churn")) if c]
    return out


# ------------------------------------------------------------------------------------
# Verdicts and markdown


def verdicts(
    day: Mapping[str, Any], policy: str = DEFAULT_POLICY, quantile: float | None = None
) -> dict[str, Any]:
    """The issue's targets for `policy` on one day: >= 25% cheaper (rental +
    penalties) than the best fixed plan, a violating share no larger than that
    plan's and <= 1%, coverage within 2 points of the target quantile (own
    accounting and the service's), churn no higher than the posted-mean loop's."""
    pols = day["policies"]
    if policy not in pols:
        return {}
    p = pols[policy]
    q = quantile if quantile is not None else Policy().demand_quantile
    out: dict[str, Any] = {"policy": policy}
    best = day.get("best_fixed")
    if best:
        b = pols[best]
        saving = 1.0 - p["total_cost"] / b["total_cost"]
        out["best_fixed"] = best
        out["saving_vs_best_fixed"] = saving
        out["saving_met"] = saving >= 0.25
        out["violation_vs_best_fixed"] = (p["violation_share"], b["violation_share"])
        out["violation_met"] = (
            # 1e-12: a share summed from float minutes is "0" up to rounding (9.7e-19)
            p["violation_share"] <= b["violation_share"] + 1e-12 and p["violation_share"] <= 0.01
        )
    cov = p.get("coverage")
    svc = (p.get("service_coverage") or {}).get("share_at_or_below")
    if cov is not None:
        out["coverage"] = (cov, svc, q)
        out["coverage_met"] = abs(cov - q) <= 0.02 and (svc is None or abs(svc - q) <= 0.02)
    if "svc-mean" in pols and policy != "svc-mean":
        out["churn"] = (p["churn_gpus"], pols["svc-mean"]["churn_gpus"])
        out["churn_met"] = p["churn_gpus"] <= pols["svc-mean"]["churn_gpus"]
    return out


def _cov(p: Mapping[str, Any]) -> str:
    own = p.get("coverage")
    svc = (p.get("service_coverage") or {}).get("share_at_or_below")
    s = "-" if own is None else f"{100 * own:.1f}%"
    return s + (f" / {100 * svc:.1f}%" if svc is not None else "")


def day_table(day: Mapping[str, Any], default: str = DEFAULT_POLICY) -> list[str]:
    pols = day["policies"]
    best = day.get("best_fixed")
    ref = pols[best]["total_cost"] if best else None
    hours = day["minutes"] / 60
    unit = "$/day" if abs(hours - 24) < 1e-9 else f"$/{hours:g} h"
    out = [
        f"| policy | {unit} (rental + penalties) | rental $ | penalties $ | violating "
        "| churn GPUs | reconfig. $ | total incl. reconfig. $ | mean GPUs | coverage (own / "
        "service) | vs best fixed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    shown = [
        k for k in pols if k in SERVICE_POLICIES or k in PLOTTED_FIXED or k in ORACLES or k == best
    ]
    for k in shown:
        p = pols[k]
        vs = f"{100 * (p['total_cost'] / ref - 1):+.1f}%" if ref else ""
        name = f"**{k}**" if k == default else k
        if k == best:
            name += " (best fixed)"
        out.append(
            f"| {name} | {p['total_cost']:.1f} | {p['rental']:.1f} | {p['penalties']:.1f} "
            f"| {100 * p['violation_share']:.3f}% | {p['churn_gpus']} "
            f"| {p['reconfiguration_cost']:.1f} | {p['total_with_reconfiguration']:.1f} "
            f"| {p['mean_gpus']:.1f} | {_cov(p)} | {vs} |"
        )
    others = [k for k in pols if k not in shown]
    if others:
        out.append("")
        out.append(
            "Other fixed plans ($ · violating · GPUs): "
            + ", ".join(
                f"{k} ${pols[k]['total_cost']:.1f} · {100 * pols[k]['violation_share']:.3f}% · "
                f"{pols[k]['mean_gpus']:.0f}"
                for k in others
            )
        )
    return out


def verdict_table(days: Sequence[Mapping[str, Any]], policy: str = DEFAULT_POLICY,
                  quantile: float | None = None) -> list[str]:  # fmt: skip
    def mark(ok: bool | None) -> str:
        return "" if ok is None else (" ✓" if ok else " ✗")

    out = [
        f"| day | {policy} vs best fixed (target ≤ −25%) | violating: {policy} vs best fixed "
        "(target ≤ it and ≤ 1%) | coverage own / service vs target (±2 pts) | churn vs "
        "svc-mean (target ≤) |",
        "|---|---|---|---|---|",
    ]
    for d in days:
        v = verdicts(d, policy, quantile)
        if not v:
            continue
        name = d["name"] + (" (held out)" if d.get("held_out") else "")
        sav = (
            f"{-100 * v['saving_vs_best_fixed']:+.1f}% vs {v['best_fixed']}"
            + mark(v.get("saving_met"))
            if "saving_vs_best_fixed" in v
            else "-"
        )
        vio = (
            f"{100 * v['violation_vs_best_fixed'][0]:.3f}% vs "
            f"{100 * v['violation_vs_best_fixed'][1]:.3f}%" + mark(v.get("violation_met"))
            if "violation_vs_best_fixed" in v
            else "-"
        )
        if "coverage" in v:
            own, svc, q = v["coverage"]
            cov = (f"{100 * own:.1f}% / " + ("-" if svc is None else f"{100 * svc:.1f}%")
                   + f" vs {100 * q:.0f}%" + mark(v.get("coverage_met")))  # fmt: skip
        else:
            cov = "-"
        ch = (f"{v['churn'][0]} vs {v['churn'][1]}" + mark(v.get("churn_met"))
              if "churn" in v else "-")  # fmt: skip
        out.append(f"| {name} | {sav} | {vio} | {cov} | {ch} |")
    return out


def markdown(res: Mapping[str, Any]) -> str:
    out: list[str] = []
    q = res.get("meta", {}).get("demand_quantile")
    default = res.get("meta", {}).get("default_policy", DEFAULT_POLICY)
    for d in res["days"]:
        out.append(
            f"#### {d['name']}{' (held out)' if d.get('held_out') else ''}: {d['description']}\n"
        )
        out += day_table(d, default)
        out.append("")
    out.append("#### Targets (default policy)\n")
    out += verdict_table(res["days"], default, q)
    out.append("")
    return "\n".join(out)


def tuning_markdown(res: Mapping[str, Any], fixed: Mapping[str, Any] | None = None) -> str:
    """One row per variant, day and policy; with `fixed` (a main results file of the
    same seed) the cost against that day's best fixed plan."""
    best = {}
    for d in (fixed or {}).get("days", []):
        if d.get("best_fixed"):
            best[d["name"]] = (d["best_fixed"], d["policies"][d["best_fixed"]]["total_cost"])
    out = [
        "| variant | day | policy | $ (rental + penalties) | vs best fixed | violating "
        "| churn GPUs | mean GPUs | coverage (own / service) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in res["variants"]:
        label = v["name"] + (
            " ("
            + ", ".join(
                f"{k}={val:g}" if isinstance(val, float) else f"{k}={val}"
                for k, val in v["overrides"].items()
            )
            + ")"
            if v["overrides"]
            else ""
        )
        for d in v["days"]:
            for k, p in d["policies"].items():
                b = best.get(d["name"])
                vs = f"{100 * (p['total_cost'] / b[1] - 1):+.1f}%" if b else ""
                out.append(
                    f"| {label} | {d['name']} | {k} | {p['total_cost']:.1f} | {vs} "
                    f"| {100 * p['violation_share']:.3f}% | {p['churn_gpus']} "
                    f"| {p['mean_gpus']:.1f} | {_cov(p)} |"
                )
    return "\n".join(out)


# ------------------------------------------------------------------------------------


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs for the service policies' Policy (numbers parsed)."""
    out: dict[str, Any] = {}
    fields = set(Policy.__dataclass_fields__)
    for item in items:
        for part in item.split(","):
            if not part:
                continue
            k, _, v = part.partition("=")
            if k not in fields:
                raise SystemExit(f"--override: {k!r} is not a policy field")
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


MERGE_VARYING = ("command", "started_at", "wall_s")  # meta fields two side-by-side runs differ in


def merge_results(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One study from runs of the same commit and settings over different days, made
    side by side: the days in the study's order, the commands joined, the wall time
    of the longest run (they overlapped). Runs that differ in anything else (the
    commit, the policy, the seeds) or repeat a day are refused."""
    base = {k: v for k, v in runs[0]["meta"].items() if k not in MERGE_VARYING}
    for r in runs[1:]:
        other = {k: v for k, v in r["meta"].items() if k not in MERGE_VARYING}
        if other != base:
            diff = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
            raise SystemExit(f"--merge: the runs differ in {diff}")
    days = [d for r in runs for d in r["days"]]
    names = [d["name"] for d in days]
    if len(set(names)) != len(names):
        raise SystemExit(f"--merge: a day appears twice: {names}")
    order = [d.name for d in demand_days_order()]
    days.sort(key=lambda d: order.index(d["name"]) if d["name"] in order else len(order))
    meta = {
        **runs[0]["meta"],
        "command": " & ".join(r["meta"]["command"] for r in runs)
        + " (side by side; merged with --merge)",
        "started_at": min(r["meta"]["started_at"] for r in runs),
        "wall_s": max(r["meta"]["wall_s"] for r in runs),
    }
    return {"meta": meta, "days": days}


def demand_days_order() -> list[Any]:
    import demand_days  # local: demand_days builds its days from this module

    return demand_days.backtest_days()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--days", default="", help="comma-separated day names (default: all)")
    ap.add_argument("--policies", default=",".join(POLICIES),
                    help=f"comma-separated, from {','.join(POLICIES)}")  # fmt: skip
    ap.add_argument("--override", action="append", default=[],
                    help="policy field=value for the service policies (tuning runs)")  # fmt: skip
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME:field=value,... : run the service policies once per variant "
                    "(a tuning file: no per-minute series)")  # fmt: skip
    ap.add_argument(
        "--actuation-delay-s",
        type=float,
        default=ACTUATION_DELAY_S,
        help="the world's delay from publishing a plan to its being in force",
    )
    ap.add_argument("--no-poisson", action="store_true", help="counts = 60 x rate, not sampled")
    ap.add_argument(
        "--count-seed",
        type=int,
        default=None,
        help="seed of the Poisson counts (default --seed): the same days, other draws",
    )
    ap.add_argument("--service-budget", type=float, default=1.0, help="service AGH budget, s")
    ap.add_argument("--static-budget", type=float, default=5.0, help="fixed-plan AGH budget, s")
    ap.add_argument("--milp-limit", type=float, default=60.0, help="fixed-plan MILP limit, s")
    ap.add_argument("--minutes", type=int, default=None, help="shorter spans, for a smoke run")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="merge the result files of runs made side by side (other days, "
                    "same commit and settings) into --out; runs nothing")  # fmt: skip
    args = ap.parse_args()
    if args.merge:
        merged = merge_results([json.loads(f.read_text(encoding="utf-8")) for f in args.merge])
        args.out.write_text(json.dumps(merged) + "\n", encoding="utf-8")
        print(f"wrote {args.out}: days {[d['name'] for d in merged['days']]}", file=sys.stderr)
        return
    args.overrides = parse_overrides(args.override)
    policies = [p for p in args.policies.split(",") if p]
    unknown = set(policies) - set(POLICIES)
    if unknown:
        ap.error(f"unknown policies {sorted(unknown)}; choose from {list(POLICIES)}")
    names = [d for d in args.days.split(",") if d] or None
    t0 = time.monotonic()
    from provenance import provenance

    pol = replace(demo_scenario().policy, **args.overrides)
    res: dict[str, Any] = {
        "meta": {
            **provenance(),
            "seed": args.seed,
            "poisson": not args.no_poisson,
            "count_seed": args.seed if args.count_seed is None else args.count_seed,
            "actuation_delay_s": args.actuation_delay_s,
            "service_time_budget_s": args.service_budget,
            "static_agh_budget_s": args.static_budget,
            "milp_time_limit_s": args.milp_limit,
            "minutes": args.minutes,
            "overrides": args.overrides,
            "service_policy": {
                k: getattr(pol, k)
                for k in (
                    "replan_interval_s",
                    "actuation_delay_s",
                    "demand_quantile",
                    "forecast",
                    "replan_deadband",
                    "scale_down_stabilization_s",
                    "change_payback_s",
                    "max_utilization",
                    "change_cost_per_gpu",
                )
            },
            "demand_quantile": pol.demand_quantile,
            "default_policy": DEFAULT_POLICY,
            "change_cost_per_gpu": CHANGE_COST_PER_GPU,
            "policies": {k: POLICIES[k] for k in policies},
        },
        "days": [],
    }
    days = study_days(
        args.seed, names, args.minutes, poisson=not args.no_poisson, count_seed=args.count_seed
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rolling-") as tmp:
        if not args.variant:
            for day in days:
                res["days"].append(run_day(day, policies, args, Path(tmp)))
                # written after each day: a long run's finished days survive an interruption
                res["meta"]["wall_s"] = time.monotonic() - t0
                args.out.write_text(json.dumps(_round(res)) + "\n", encoding="utf-8")
            print(markdown(res))
        else:
            del res["days"]
            res["variants"] = []
            for item in args.variant:
                vname, _, spec = item.partition(":")
                v_args = argparse.Namespace(**{**vars(args),
                                               "overrides": parse_overrides([spec])})  # fmt: skip
                v_days = [run_day(day, policies, v_args, Path(tmp)) for day in days]
                for d in v_days:
                    d.pop("demand", None)
                    for p in d["policies"].values():
                        p.pop("per_minute", None)
                        p.pop("gpus_by_type_changes", None)
                        p.pop("churn_events", None)
                res["variants"].append(
                    {"name": vname, "overrides": v_args.overrides, "days": v_days}
                )
                res["meta"]["wall_s"] = time.monotonic() - t0
                args.out.write_text(json.dumps(_round(res)) + "\n", encoding="utf-8")
            print(tuning_markdown(res))
    print(f"\nwrote {args.out} in {res['meta']['wall_s']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
