"""Background improvement of the live plan (app/service/reconcile.py): after a
re-plan for generation N is published, one improvement solve for N, warm-started
from and priced against the published plan, publishes a new version of N only
when it saves more than its change cost plus the threshold; a newer generation
stops it, and it is never published once the live plan has moved on.

The instance: `accuracy_mix` (seed 7) with a small change cost. A re-plan
limited to one AGH start and no exact polish (0.2 s budget: below the polish's
minimum) returns a plan that the improvement (warm start, then the polish, in
the deterministic mode) beats by ~8% with its change cost included. No test
asserts a wall-clock time: they wait for the reconciler's improvement records.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_support import client_for, fast_settings, running, wait_for_plan

from app.engine.api import evaluate_documents, normalize_scenario
from app.research.families import FAMILIES
from app.service.pool import SolverCrashed, SolverPool
from app.service.reconcile import ImprovementRecord, _bound_rules_out
from app.service.settings import Settings
from app.service.store import PlanRow, Store


def improvable_spec() -> dict[str, Any]:
    doc = FAMILIES["accuracy_mix"](7, n_types=4, n_models=2)
    doc["policy"]["change_cost_per_gpu"] = 0.005  # x12 (horizon 1 h / 300 s interval)
    return normalize_scenario(doc)


def seeded_settings(tmp_path: Path, spec: dict[str, Any], **overrides: Any) -> Settings:
    """Settings whose database starts at generation 1 with `spec` (not the demo)."""
    values: dict[str, Any] = {
        "max_starts": 1,
        # It ends when its deterministic search does (~1 s); the budget is headroom
        # for a loaded machine.
        "improve_budget_s": 20.0,
        "improve_min_saving_fraction": 0.01,
        **overrides,
    }
    settings = fast_settings(tmp_path, **values)
    store = Store(settings.db_path)
    store.open()
    try:
        store.save_cluster(1, spec, None)
    finally:
        store.close()
    return settings


def wait_improvement(c: TestClient, generation: int, timeout_s: float = 120) -> ImprovementRecord:
    """The record of the improvement of `generation` (a guard, not a timing test)."""
    reconciler = running(c).reconciler
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for rec in list(reconciler.improvements):
            if rec.generation == generation:
                return rec
        time.sleep(0.05)
    raise AssertionError(f"no improvement of generation {generation} finished")


def metric(c: TestClient, line_start: str) -> float | None:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return None


def test_a_cheaper_plan_is_published_as_a_new_version_of_the_same_generation(
    tmp_path: Path,
) -> None:
    spec = improvable_spec()
    settings = seeded_settings(tmp_path, spec)
    with client_for(settings) as c:
        first = wait_for_plan(c, 1)
        assert first["version"] == 1 and first["solver"]["source"] == "replan"
        rec = wait_improvement(c, 1)
        assert rec.outcome == "published", rec
        body = c.get("/v1/plan").json()
        assert body["version"] == 2 and body["observed_generation"] == 1 == body["generation"]
        assert body["status"] == "Ready"
        solver, plan = body["solver"], body["plan"]
        assert solver["source"] == "improvement"
        info = solver["improvement"]
        assert info["from_version"] == 1
        assert body["diff"]["from_version"] == 1 and body["diff"]["actions"]
        assert plan["feasible"] is True
        # Priced independently: the published plan with itself live, the improved
        # one with its change cost from the published plan.
        baseline = evaluate_documents(spec, first["plan"], first["plan"])["objective"]
        improved = evaluate_documents(spec, plan, first["plan"])
        assert improved["objective"] == pytest.approx(plan["cost"]["total"])
        assert plan["cost"]["change_cost"] > 0
        assert info["baseline_objective"] == pytest.approx(baseline)
        assert info["saving"] == pytest.approx(baseline - improved["objective"])
        assert info["threshold"] == pytest.approx(0.01 * baseline)
        assert info["saving"] > info["threshold"] > 0
        # The analysis and the explanation came with it, as for any re-plan.
        assert body["analysis"]["query_types"]
        explain = c.get("/v1/plan/explain").json()
        assert explain["version"] == 2 and explain["query_types"]
        history = c.get("/v1/plan/history").json()["items"]
        assert [(h["version"], h["source"]) for h in history] == [
            (2, "improvement"),
            (1, "replan"),
        ]
        # A long-poll for the generation answers at once with the improved plan.
        again = c.get("/v1/plan", params={"wait_for_generation": 1, "timeout_s": 0}).json()
        assert again["version"] == 2
        assert metric(c, 'llm_allocator_improvements_total{outcome="published"}') == 1.0
        saved = metric(c, "llm_allocator_improvement_savings_dollars_total")
        assert saved == pytest.approx(info["saving"])
        # One improvement per generation: nothing improves the improvement.
        assert len(running(c).reconciler.improvements) == 1
    # Durable like any plan; after a restart it is served, and neither a re-plan
    # nor an improvement starts (the plan is up to date).
    with client_for(settings) as c:
        body = c.get("/v1/plan").json()
        assert (body["version"], body["solver"]["source"]) == (2, "improvement")
        assert body["status"] == "Ready"
        reconciler = running(c).reconciler
        assert reconciler.solves == 0 and reconciler.improving is None
        assert not reconciler.improvements


def test_an_improvement_below_the_threshold_publishes_nothing(tmp_path: Path) -> None:
    # A cheaper plan exists (the test above), but it saves ~$1.6 per hour, not $100.
    settings = seeded_settings(tmp_path, improvable_spec(), improve_min_saving_usd=100.0)
    with client_for(settings) as c:
        first = wait_for_plan(c, 1)
        rec = wait_improvement(c, 1)
        assert rec.outcome == "not_better"
        assert rec.result is not None and rec.result.outcome is None
        assert 0 < rec.result.saving <= rec.result.threshold == 100.0
        body = c.get("/v1/plan").json()
        assert body["version"] == first["version"] == 1
        assert [h["version"] for h in c.get("/v1/plan/history").json()["items"]] == [1]
        assert metric(c, 'llm_allocator_improvements_total{outcome="not_better"}') == 1.0
        assert metric(c, 'llm_allocator_improvements_total{outcome="published"}') is None


class GatedPool:
    """The real improvement pool, holding the first job at a gate: `before` the
    job reaches the worker, or `after` it ran (before its result is used). Later
    jobs are held until the test ends."""

    def __init__(self, real: SolverPool, where: str) -> None:
        self.real = real
        self.where = where
        self.entered = threading.Event()  # the first job is at the gate
        self.gate = threading.Event()
        self.calls = 0

    def announce(self, generation: int) -> None:
        self.real.announce(generation)

    async def _hold(self, gate: threading.Event) -> None:
        self.entered.set()
        while not gate.is_set():  # cancellable at shutdown, unlike a thread's wait
            await asyncio.sleep(0.01)

    async def run(self, timeout_s: float, fn: Any, *args: Any) -> Any:
        self.calls += 1
        if self.calls > 1:
            await self._hold(threading.Event())  # never released
        if self.where == "before":
            await self._hold(self.gate)
        result = await self.real.run(timeout_s, fn, *args)
        if self.where == "after":
            await self._hold(self.gate)
        return result


@pytest.fixture
def gated(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, GatedPool]]:
    """A service at generation 1 (the demo) whose next improvement (generation 2,
    the improvable spec) is held at the gate."""
    with client_for(fast_settings(tmp_path, max_starts=1, improve_budget_s=20.0)) as c:
        wait_for_plan(c, 1)
        wait_improvement(c, 1)  # the demo's: it goes through the pool before the gate
        reconciler = running(c).reconciler
        assert reconciler.improve_pool is not None
        pool = GatedPool(reconciler.improve_pool, request.param)
        reconciler.improve_pool = pool  # type: ignore[assignment]
        r = c.put("/v1/cluster", json={"spec": improvable_spec()})
        assert r.status_code == 200 and r.json()["generation"] == 2
        wait_for_plan(c, 2)
        assert pool.entered.wait(60)
        yield c, pool


def _newer_generation_wins(c: TestClient, pool: GatedPool, expected: str) -> None:
    v2 = c.get("/v1/plan").json()
    assert (v2["observed_generation"], v2["solver"]["source"]) == (2, "replan")
    r = c.post(
        "/v1/cluster/demand",
        json={"mode": "merge", "query_types": [{"id": "q02-math", "arrival_rate": 6.0}]},
    )
    assert r.status_code == 202, r.text
    g3 = r.json()["generation"]
    assert g3 == 3
    # The re-plan of generation 3 does not wait for the improvement held in flight.
    v3 = wait_for_plan(c, g3)
    assert v3["observed_generation"] == 3 and v3["solver"]["source"] == "replan"
    pool.gate.set()
    rec = wait_improvement(c, 2)
    assert rec.outcome == expected, rec
    body = c.get("/v1/plan").json()
    assert body["version"] == v3["version"] and body["observed_generation"] == 3
    history = c.get("/v1/plan/history").json()["items"]
    assert history[0]["version"] == v3["version"]
    assert all(h["source"] != "improvement" for h in history)
    assert metric(c, f'llm_allocator_improvements_total{{outcome="{expected}"}}') == 1.0


@pytest.mark.parametrize("gated", ["before"], indirect=True)
def test_a_newer_generation_stops_the_improvement(gated: tuple[TestClient, GatedPool]) -> None:
    c, pool = gated
    _newer_generation_wins(c, pool, "stopped")
    rec = wait_improvement(c, 2)
    assert rec.result is not None and rec.result.termination == "stopped"


@pytest.mark.parametrize("gated", ["after"], indirect=True)
def test_an_improvement_finished_after_a_newer_plan_is_not_published(
    gated: tuple[TestClient, GatedPool],
) -> None:
    c, pool = gated
    _newer_generation_wins(c, pool, "superseded")
    rec = wait_improvement(c, 2)
    # It had found the cheaper plan: only the newer plan kept it out.
    assert rec.result is not None and rec.result.outcome is not None
    assert rec.result.saving > rec.result.threshold


def test_improve_budget_zero_disables_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ALLOCATOR_IMPROVE_BUDGET_S", "0")
    assert Settings().improve_budget_s == 0.0
    monkeypatch.delenv("LLM_ALLOCATOR_IMPROVE_BUDGET_S")
    assert Settings().improve_budget_s == 5.0  # the default
    settings = seeded_settings(tmp_path, improvable_spec(), improve_budget_s=0.0)
    with client_for(settings) as c:
        wait_for_plan(c, 1)
        reconciler = running(c).reconciler
        assert reconciler.improve_pool is None
        # A second generation is planned and published (the loop went on past the
        # first publication) and still nothing was improved.
        r = c.post(
            "/v1/cluster/demand",
            json={"mode": "merge", "query_types": [{"id": "q02-math", "arrival_rate": 6.0}]},
        )
        body = wait_for_plan(c, r.json()["generation"])
        assert body["solver"]["source"] == "replan"
        assert not reconciler.improvements and reconciler.improving is None
        assert [h["source"] for h in c.get("/v1/plan/history").json()["items"]] == [
            "replan",
            "replan",
        ]
        assert "llm_allocator_improvements_total{" not in c.get("/metrics").text


class CrashingPool:
    """An improvement pool whose worker dies (the live plan must not care)."""

    def __init__(self, real: SolverPool) -> None:
        self.real = real

    def announce(self, generation: int) -> None:
        self.real.announce(generation)

    async def run(self, timeout_s: float, fn: Any, *args: Any) -> Any:
        raise SolverCrashed("solver process died (test)")


def test_a_failed_improvement_leaves_the_live_plan_alone(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path, max_starts=1, improve_budget_s=5.0)) as c:
        wait_for_plan(c, 1)
        wait_improvement(c, 1)  # the demo's, through the real pool
        reconciler = running(c).reconciler
        assert reconciler.improve_pool is not None
        reconciler.improve_pool = CrashingPool(reconciler.improve_pool)  # type: ignore[assignment]
        r = c.put("/v1/cluster", json={"spec": improvable_spec()})
        v2 = wait_for_plan(c, r.json()["generation"])
        assert wait_improvement(c, 2).outcome == "failed"
        body = c.get("/v1/plan").json()
        assert body["version"] == v2["version"] and body["status"] == "Ready"
        assert metric(c, 'llm_allocator_improvements_total{outcome="failed"}') == 1.0
        assert metric(c, 'llm_allocator_replans_total{outcome="failed"}') is None


def _row(total: float, change: float, bound: float | None, feasible: bool = True) -> PlanRow:
    plan = {"cost": {"total": total, "change_cost": change}, "feasible": feasible}
    return PlanRow(1, 1, "", {}, plan, {"bound": bound}, {}, {})


def test_the_replans_bound_rules_out_an_improvement_that_cannot_pay() -> None:
    s = fast_settings(Path("/nonexistent"), improve_budget_s=5.0)  # 1% of the objective
    # No plan saves more than objective - bound (change cost from before included).
    assert _bound_rules_out(_row(101.0, 1.0, 100.5), s)  # at most 0.5 <= 1.0
    assert not _bound_rules_out(_row(103.0, 1.0, 100.5), s)  # up to 2.5 may be saved
    assert not _bound_rules_out(_row(101.0, 1.0, None), s)  # no bound: try
    assert not _bound_rules_out(_row(101.0, 1.0, 101.0, feasible=False), s)
